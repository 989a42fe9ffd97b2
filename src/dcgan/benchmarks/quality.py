"""``dcgan quality``: sample quality of the project's recipe against the classic ones, for equal wall-clock time.

Per seed, one recipe after another (never two at once), each in its own subprocess:

- ``default``: ``dcgan train`` with the project's defaults on the chosen data;
- ``classic`` and ``newcomer``: the baselines of ``baselines.py``, the
  pytorch/examples loop at 64x64 and the same loop at 28x28 as a newcomer writes it.

Every recipe gets the same budget of training time: the clock starts when the
recipe has set up (its ``config.json`` appears in its run directory) and ends
with SIGTERM, on which each finishes its step and saves its generator (the
trainer its checkpoint, exit code 143). The reported wall time runs from that
start to the process's exit.

Every result is then sampled the same way (``sample.load_generator``: the
generator, the EMA one where the recipe keeps one, in eval mode with its
batch-norm statistics recalibrated on noise, ``ema.recalibrated``) and scored
with the offline digit evaluator against the real training images, whose
features are cached once for all recipes. The evaluator reads 28x28: it
resizes the classic's 64x64 output with antialiasing, as it does any size.

A run whose discriminator wins every batch for the last stretch of training
(D(x) > 0.99, D(G(z)) < 0.01, loss_G > 5 over 3 logged windows: the trainer's
own rule) is reported as collapsed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .baselines import BASELINES, collapse_warning
from ..errors import UserError
from ..fileio import check_new_folder, write_text_atomic
from ..metrics.evaluate import check_fid_images
from ..runlog import CollapseDetector
from ..signals import on_signals

RECIPES = ("default", "classic", "newcomer", "paper")
TRAINER_RECIPES = ("default", "paper")  # run by dcgan train --recipe; the others are the baselines' loops
DATASETS = ("mnist", "mnist-5k")  # the digit evaluator scores digits
STOP_EXIT_CODES = (0, 143)  # 143: the trainer stopped by SIGTERM, the budget's end



@dataclass
class QualityConfig:
    data: str = "mnist"
    data_root: str | None = None
    budget_s: float = 15 * 60  # training time per recipe and seed
    seeds: tuple[int, ...] = (0,)
    recipes: tuple[str, ...] = RECIPES
    num_images: int = 10_000  # generated images per evaluation
    out: str | None = None  # None: runs/quality-TIMESTAMP
    width: int | None = None  # G and D base feature maps; None: every recipe's own (64)
    max_images: int | None = None  # train on the first N images only (tests)
    threads: int | None = None  # intra-op threads per training process; None: torch's default
    device: str = "auto"
    cache_dir: str | None = None  # real-feature cache; None: ~/.cache/dcgan/stats
    log_every_steps: int = 50  # the trainer's default; windows for the collapse check
    setup_timeout_s: float = 600.0  # imports and data loading before training starts
    stop_timeout_s: float = 300.0  # after SIGTERM: the last step and the save
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides) -> "QualityConfig":
        """Tiny networks, seconds of training, a few hundred images: checks the wiring."""
        values = dict(budget_s=3.0, num_images=200, width=8, max_images=512, threads=1, log_every_steps=5)
        return cls(**{**values, **overrides, "quick": True})


def command_line(cfg: QualityConfig) -> str:
    """The ``dcgan quality`` command that reproduces ``cfg``: its values that differ from the defaults."""
    base = QualityConfig.quick_config() if cfg.quick else QualityConfig()
    internal = ("quick", "log_every_steps", "setup_timeout_s", "stop_timeout_s")  # not options
    parts = ["dcgan", "quality"] + (["--quick"] if cfg.quick else [])
    for f in dataclasses.fields(QualityConfig):
        value = getattr(cfg, f.name)
        if f.name in internal or value == getattr(base, f.name):
            continue
        if f.name == "budget_s":
            parts += ["--budget-min", f"{value / 60:g}"]
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            parts += ["--" + f.name.replace("_", "-"), text]
    return shlex.join(parts)


def validate(cfg: QualityConfig) -> None:
    """Fail on bad values before any work starts."""
    from ..config import TrainConfig

    if cfg.data not in DATASETS:
        raise UserError(f"--data: the digit evaluator scores {' or '.join(DATASETS)}, not {cfg.data!r}")
    if not (cfg.budget_s > 0 and math.isfinite(cfg.budget_s)):
        raise UserError(f"--budget-min must be a positive number, got {cfg.budget_s / 60:g}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise UserError("--seeds needs at least one seed, each once")
    unknown = [r for r in cfg.recipes if r not in RECIPES]
    if unknown or not cfg.recipes or len(set(cfg.recipes)) != len(cfg.recipes):
        raise UserError(f"--recipes: choose among {', '.join(RECIPES)}, each once (got {','.join(cfg.recipes)})")
    check_fid_images(cfg.num_images)
    largest_batch = max(TrainConfig.for_recipe(r).batch_size if r in TRAINER_RECIPES else BASELINES[r].batch_size
                        for r in cfg.recipes)
    if cfg.max_images is not None and cfg.max_images < largest_batch:
        raise UserError(f"--max-images must be at least {largest_batch} (a batch), got {cfg.max_images}")
    for name in ("width", "threads"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.out is not None:
        check_new_folder(cfg.out, "--out")


# --------------------------------------------------------------------------- one recipe, one seed


def _command(cfg: QualityConfig, recipe: str, seed: int, run_dir: Path) -> list[str]:
    """``dcgan train`` for the default recipe; this module's worker for the baselines."""
    from ..config import TrainConfig

    if recipe in TRAINER_RECIPES:
        cmd = [sys.executable, "-m", "dcgan", "train", "--recipe", recipe, "--data", cfg.data, "--seed", str(seed),
               "--run-dir", str(run_dir), "--device", cfg.device, "--steps", str(10**9), "--quiet"]
        if cfg.data_root is not None:
            cmd += ["--data-root", cfg.data_root]
        if cfg.width is not None:
            cmd += ["--g-width", str(cfg.width), "--d-width", str(cfg.width)]
        if cfg.max_images is not None:
            cmd += ["--max-images", str(cfg.max_images)]
        if cfg.log_every_steps != TrainConfig().log_every_steps:
            cmd += ["--log-every-steps", str(cfg.log_every_steps)]
        return cmd
    spec = dict(recipe=recipe, data=cfg.data, data_root=cfg.data_root, max_images=cfg.max_images,
                width=cfg.width or 64, seed=seed, device=cfg.device, run_dir=str(run_dir),
                log_every_steps=cfg.log_every_steps)
    return [sys.executable, "-m", "dcgan.benchmarks.baselines", json.dumps(spec)]


def run_for_budget(cmd: list[str], *, started: Path, budget_s: float, log_path: Path, setup_timeout_s: float,
                   stop_timeout_s: float, env: dict | None = None) -> dict:
    """Run ``cmd``; once ``started`` exists, let it train ``budget_s`` seconds, then SIGTERM it.

    Returns the exit code and the seconds of setup, training (from ``started`` to
    the exit) and the whole process. On an interrupt the process is stopped the
    same way (it saves its work) before the interrupt goes on.
    """
    launch = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while not started.exists() and proc.poll() is None:
                if time.perf_counter() - launch > setup_timeout_s:
                    raise UserError(f"training did not start within {setup_timeout_s:.0f} s; see {log_path}")
                time.sleep(0.05)
            train_start = time.perf_counter()
            while proc.poll() is None and time.perf_counter() - train_start < budget_s:
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # finish the step, save, exit
                try:
                    proc.wait(timeout=stop_timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    end = time.perf_counter()
    return {"returncode": proc.returncode, "setup_s": train_start - launch, "train_s": end - train_start,
            "process_s": end - launch}


def _summary(run_dir: Path, checkpoint: Path) -> dict:
    """Steps, images seen and the last logged statistics of a finished run."""
    from ..runlog import read_metrics

    state = ckpt.load(checkpoint)
    detector = CollapseDetector()
    for row in read_metrics(run_dir / "metrics.jsonl"):
        if "loss_G" in row and not row.get("partial"):  # training rows; not evaluation rows
            detector.add(row)
    images_seen = state.get("images_seen", state["step"] * state["config"]["batch_size"])
    last = detector.last or {}
    return {
        "steps": state["step"], "images_seen": images_seen,
        "last": {k: last.get(k) for k in ("step", "D_x", "D_G_z_before", "loss_G")},
        "collapsed": detector.collapsed, "first_collapse_step": detector.first_step,
    }


# --------------------------------------------------------------------------- the benchmark


def run(cfg: QualityConfig, *, command: str | None = None, out=print) -> dict:
    """Train and evaluate every recipe for every seed; write results.json, results.md and grids.

    SIGTERM (and Ctrl-C) stop the recipe in training the same way the budget does, then end the run.
    """
    validate(cfg)
    with on_signals(_exit_on_sigterm, (signal.SIGTERM,)):
        return _run(cfg, command, out)


def _exit_on_sigterm(signum, frame):
    """Unwind through ``run_for_budget``, which stops the training process, instead of orphaning it."""
    raise SystemExit(128 + signum)


def _run(cfg: QualityConfig, command: str | None, out) -> dict:
    from ..data import DataSpec, load
    from ..metrics.evaluate import evaluate
    from ..metrics.report import EvalOptions, RealData, prepare
    from ..runtime import choose_device
    from ..sample import generate, load_generator, write

    load(DataSpec(name=cfg.data, root=cfg.data_root, max_images=cfg.max_images), progress=False)  # fail early
    device = choose_device(cfg.device)
    root = Path(cfg.out or f"runs/quality-{datetime.now():%Y%m%d-%H%M%S}")
    for folder in ("runs", "logs", "samples"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    extractor, real, key = prepare(
        RealData(data=cfg.data, data_root=cfg.data_root, image_size=28, channels=1),
        EvalOptions(num_images=cfg.num_images, extractor="digits", cache_dir=cfg.cache_dir, progress=False),
    )
    env = {**os.environ, **({"OMP_NUM_THREADS": str(cfg.threads)} if cfg.threads else {})}
    results = {"command": command, "config": asdict(cfg), "device": str(device), "torch": torch.__version__,
               "cpu_count": os.cpu_count(), "rows": [], "ratios": {}}
    total = len(cfg.seeds) * len(cfg.recipes)
    out(f"dcgan quality: {', '.join(cfg.recipes)} x seeds {', '.join(map(str, cfg.seeds))}, "
        f"{_duration(cfg.budget_s)} of training each, one after another; results in {root}")
    for seed in cfg.seeds:
        for recipe in cfg.recipes:
            name = f"{recipe}-seed{seed}"
            run_dir, log_path = root / "runs" / name, root / "logs" / f"{name}.log"
            out(f"[{len(results['rows']) + 1}/{total}] {name}: training {_duration(cfg.budget_s)} (log {log_path})")
            timing = run_for_budget(
                _command(cfg, recipe, seed, run_dir), started=run_dir / "config.json", budget_s=cfg.budget_s,
                log_path=log_path, setup_timeout_s=cfg.setup_timeout_s, stop_timeout_s=cfg.stop_timeout_s, env=env,
            )
            checkpoint = run_dir / ("checkpoints/latest.pt" if recipe in TRAINER_RECIPES else "generator.pt")
            row = {"recipe": recipe, "seed": seed, **timing}
            if timing["returncode"] not in STOP_EXIT_CODES or not checkpoint.is_file():
                tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
                row["error"] = f"exit code {timing['returncode']}; see {log_path}"
                out(f"error: {name} failed ({row['error']}):\n{tail}")
            else:
                row.update(_summary(run_dir, checkpoint))
                if row["collapsed"]:
                    out(collapse_warning(recipe, seed, row["last"]) + " (at the end of training)")
                G = load_generator(checkpoint, device)  # the EMA where kept; eval mode, recalibrated BN
                result = evaluate(G, real, extractor, num_images=cfg.num_images, seed=seed, cache_key=key,
                                  cache_dir=cfg.cache_dir, progress=not cfg.quick, precision_recall_k=3)
                row["eval"] = result.to_dict()
                row["grid"] = f"samples/{name}.png"
                write(generate(G, 64, seed=seed), root / row["grid"], "grid")
                out(f"    {row['steps']:,} steps, {row['images_seen']:,} images in {row['train_s']:.0f} s: "
                    f"FID {result.fid:.3f}, KID {result.kid_mean:.5f}, IS {result.is_mean:.2f}, "
                    f"smallest class {result.min_class} {result.min_class_share:.1%}"
                    + ("  COLLAPSED" if row["collapsed"] else ""))
            results["rows"].append(row)
            results["ratios"] = fid_ratios(results["rows"])
            _write_reports(root, results)
    for seed, ratio in results["ratios"].items():
        out(f"seed {seed}: default FID / best baseline FID = {ratio['ratio']:.3f} "
            f"(default {ratio['default']:.3f}; best baseline {ratio['baseline']} {ratio['baseline_fid']:.3f})")
    out(f"wrote {root / 'results.json'} and {root / 'results.md'}")
    return results


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def fid_ratios(rows: list[dict]) -> dict[int, dict]:
    """Per seed: default's FID over the better (lower) of the classic and newcomer FIDs."""
    fids = {(r["recipe"], r["seed"]): r["eval"]["fid"] for r in rows if "eval" in r}
    ratios = {}
    for seed in sorted({s for _, s in fids}):
        baselines = {r: fids[(r, seed)] for r in BASELINES if (r, seed) in fids}
        if ("default", seed) in fids and baselines:
            best = min(baselines, key=baselines.get)
            ratios[seed] = {"ratio": fids[("default", seed)] / baselines[best], "default": fids[("default", seed)],
                            "baseline": best, "baseline_fid": baselines[best]}
    return ratios


def _write_reports(root: Path, results: dict) -> None:
    """results.json and results.md, each replaced atomically: a run cut short leaves whole files."""
    for name, text in (("results.json", json.dumps(results, indent=2) + "\n"),
                       ("results.md", format_markdown(results))):
        write_text_atomic(root / name, text)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _largest(e: dict) -> str:
    """The most over-produced class and its share: with the smallest, the class mixture in two cells."""
    shares = e.get("class_shares") or {}
    if not shares:
        return "-"
    name = max(shares, key=shares.get)
    return f"{name}: {shares[name]:.1%}"


def format_markdown(results: dict) -> str:
    """The table for people (and the README), the FID ratios and the sample grids."""
    cfg = results["config"]
    lines = [
        "# Sample quality for equal training time", "",
        (f"`{results['command']}` " if results.get("command") else "")
        + f"on {results['device']} ({results['cpu_count']} CPUs, torch {results['torch']}): "
        f"{_duration(cfg['budget_s'])} of training per recipe and seed, one run at a time; "
        f"{cfg['num_images']:,} generated images per evaluation with the offline digit evaluator against the "
        f"{cfg['data']} training images. Every generator (the EMA one for `default`) is sampled in eval mode "
        "with its batch-norm statistics recalibrated on noise.", "",
        "| recipe | seed | FID | KID | IS | precision | recall | smallest class | largest class | train time | steps "
        "| images seen | collapsed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["rows"]:
        if "eval" not in r:
            lines.append(f"| {r['recipe']} | {r['seed']} | failed: {r['error']} | | | | | | | | | | |")
            continue
        e = r["eval"]
        lines.append(
            f"| {r['recipe']} | {r['seed']} | {e['fid']:.2f} | {e['kid_mean']:.4f} | {e['is_mean']:.2f} | "
            f"{_share(e.get('precision'))} | {_share(e.get('recall'))} | "
            f"{e['min_class']}: {e['min_class_share']:.1%} | {_largest(e)} | {_duration(r['train_s'])} | {r['steps']:,} | "
            f"{r['images_seen']:,} | {'**yes**' if r['collapsed'] else 'no'} |"
        )
    lines.append("")
    for seed, ratio in results["ratios"].items():
        lines.append(f"- seed {seed}: default FID / best baseline FID = **{ratio['ratio']:.3f}** "
                     f"({ratio['baseline']} was the better baseline)")
    lines += ["", "Collapsed: D(x) > 0.99, D(G(z)) < 0.01 and loss_G > 5 over the last "
              f"3 logged windows of {cfg['log_every_steps']} steps.", ""]
    for r in results["rows"]:
        if "grid" in r:
            lines.append(f"![{r['recipe']} seed {r['seed']}]({r['grid']})")
    return "\n".join(lines) + "\n"
