"""``dcgan quality``: sample quality of the project's recipe against the classic ones, for equal wall-clock time.

Per seed, one recipe after another, each in its own subprocess (or ``jobs`` of them side by side, each
on its own clock and with ``threads`` threads; the evaluations wait until the side-by-side trainings end):

- ``default``: ``dcgan train`` with the project's defaults on the chosen data;
- ``classic`` and ``newcomer``: the baselines of ``baselines.py``, the
  pytorch/examples loop (at 64x64 for digits, as the example upsamples MNIST; at the data's own
  size for colour) and, for digits, the same loop at 28x28 as a newcomer writes it;
- ``paper``: ``dcgan train --recipe paper``, Radford et al.'s hyperparameters.

Every recipe gets the same budget of training time: the clock starts when the
recipe has set up (its ``config.json`` appears in its run directory) and ends
with SIGTERM, on which each finishes its step and saves its generator (the
trainer its checkpoint, exit code 143). The reported wall time runs from that
start to the process's exit.

Every result is then sampled the same way (``Generator.from_checkpoint``: the
generator, the EMA one where the recipe keeps one, in eval mode with its
batch-norm statistics recalibrated on noise, ``ema.recalibrated``) and scored
with one offline evaluator against the real training images, whose features are cached once for
all recipes: the digit one for grayscale data, the CIFAR-10 one for colour (``--extractor``). Each
resizes what it reads to its own input size with antialiasing (the classic's 64x64 digits to 28x28).

With ``snapshot_every_min`` the trainer recipes also keep a checkpoint every M minutes of training
(``--keep-every-minutes``), each scored the same way: the time the default takes to reach the better
baseline's final FID.

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
from ..errors import UserError
from ..fileio import write_text_atomic
from ..metrics.evaluate import check_fid_images
from ..models import Generator
from ..outputs import check_output
from ..runlog import CollapseDetector
from ..signals import on_signals
from .baselines import BASELINES, collapse_warning

RECIPES = ("default", "classic", "newcomer", "paper", "conditional")
# conditional on request: it answers another question (what labels buy); the newcomer is a digits loop
DEFAULT_RECIPES = RECIPES[:4]
COLOUR_RECIPES = ("default", "classic", "paper")
# run by dcgan train: the recipe preset and the options added to it; the others are the baselines' loops
TRAINER_RECIPES = {"default": ("default", []), "paper": ("paper", []), "conditional": ("default", ["--conditional"])}
DATASETS = ("mnist", "mnist-5k", "fashion-mnist", "cifar10", "folder", "celeba", "lsun")
STOP_EXIT_CODES = (0, 143)  # 143: the trainer stopped by SIGTERM, the budget's end


@dataclass
class QualityConfig:
    data: str = "mnist"
    data_root: str | None = None
    image_size: int | None = None  # None: the data's own (data.NATIVE_SHAPES)
    channels: int | None = None
    extractor: str | None = None  # None: digits for grayscale, cifar10 for colour
    budget_s: float = 15 * 60  # training time per recipe and seed
    seeds: tuple[int, ...] = (0,)
    recipes: tuple[str, ...] | None = None  # None: DEFAULT_RECIPES for digits, COLOUR_RECIPES for colour
    num_images: int = 10_000  # generated images per evaluation
    out: str | None = None  # None: runs/quality-TIMESTAMP
    width: int | None = None  # G and D base feature maps; None: every recipe's own
    max_images: int | None = None  # train on the first N images only (tests)
    threads: int | None = None  # intra-op threads per training process; None: torch's default
    jobs: int = 1  # trainings side by side (with threads=1 on a 2-core machine: 2); evaluations run after
    snapshot_every_min: float | None = None  # also score the trainer recipes' checkpoints every M minutes
    device: str = "auto"
    cache_dir: str | None = None  # real-feature cache; None: ~/.cache/dcgan/stats
    log_every_steps: int = 50  # the trainer's default; windows for the collapse check
    setup_timeout_s: float = 600.0  # imports and data loading before training starts
    stop_timeout_s: float = 300.0  # after SIGTERM: the last step and the save
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides) -> QualityConfig:
        """Tiny networks, seconds of training, a few hundred images: checks the wiring."""
        values = dict(budget_s=3.0, num_images=200, width=8, max_images=512, threads=1, log_every_steps=5)
        return cls(**{**values, **overrides, "quick": True})

    @property
    def shape(self) -> tuple[int, int]:
        """(image_size, channels) the trainer recipes train at."""
        from ..data import native_shape
        from ..models import SUPPORTED_IMAGE_SIZES

        size, channels = native_shape(self.data, self.data_root, SUPPORTED_IMAGE_SIZES) or (28, 1)
        return self.image_size or size, self.channels or channels

    @property
    def chosen_recipes(self) -> tuple[str, ...]:
        if self.recipes is not None:
            return self.recipes
        return DEFAULT_RECIPES if self.shape == (28, 1) else COLOUR_RECIPES

    @property
    def chosen_extractor(self) -> str:
        from ..metrics.report import default_extractor

        return self.extractor or default_extractor(self.shape[1])


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
    from ..metrics.report import EXTRACTORS
    from ..models import SUPPORTED_CHANNELS, SUPPORTED_IMAGE_SIZES

    if cfg.data not in DATASETS:
        raise UserError(f"--data: choose among {', '.join(DATASETS)}, not {cfg.data!r}")
    size, channels = cfg.shape
    if size not in SUPPORTED_IMAGE_SIZES:
        raise UserError(f"--image-size: choose among {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}, not {size}")
    if channels not in SUPPORTED_CHANNELS:
        raise UserError(f"--channels: 1 (grayscale) or 3 (RGB), not {channels}")
    if cfg.extractor is not None and cfg.extractor not in EXTRACTORS:
        raise UserError(f"--extractor: choose among {', '.join(EXTRACTORS)}, not {cfg.extractor!r}")
    if "newcomer" in cfg.chosen_recipes and (size, channels) != (28, 1):
        raise UserError(
            f"--recipes: the newcomer loop trains 28x28 grayscale digits, not {size}x{size} with {channels} channels"
        )
    if not (cfg.budget_s > 0 and math.isfinite(cfg.budget_s)):
        raise UserError(f"--budget-min must be a positive number, got {cfg.budget_s / 60:g}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise UserError("--seeds needs at least one seed, each once")
    recipes = cfg.chosen_recipes
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown or not recipes or len(set(recipes)) != len(recipes):
        raise UserError(f"--recipes: choose among {', '.join(RECIPES)}, each once (got {','.join(recipes)})")
    check_fid_images(cfg.num_images)
    largest_batch = max(
        TrainConfig.for_recipe(TRAINER_RECIPES[r][0]).batch_size if r in TRAINER_RECIPES else BASELINES[r].batch_size
        for r in recipes
    )
    if cfg.max_images is not None and cfg.max_images < largest_batch:
        raise UserError(f"--max-images must be at least {largest_batch} (a batch), got {cfg.max_images}")
    if cfg.snapshot_every_min is not None and not (0 < cfg.snapshot_every_min < cfg.budget_s / 60):
        raise UserError(f"--snapshot-every-min must be above 0 and below --budget-min, got {cfg.snapshot_every_min:g}")
    for name in ("width", "threads", "jobs"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.out is not None:
        check_output(cfg.out, "--out", folder=True)  # the one guard: never into a run's checkpoints


# --------------------------------------------------------------------------- one recipe, one seed


def _command(cfg: QualityConfig, recipe: str, seed: int, run_dir: Path) -> list[str]:
    """``dcgan train`` for the default recipe; this module's worker for the baselines."""
    from ..config import TrainConfig

    if recipe in TRAINER_RECIPES:
        preset, options = TRAINER_RECIPES[recipe]
        size, channels = cfg.shape
        cmd = [
            sys.executable,
            "-m",
            "dcgan",
            "train",
            "--recipe",
            preset,
            *options,
            "--data",
            cfg.data,
            "--image-size",
            str(size),
            "--channels",
            str(channels),
            "--seed",
            str(seed),
            "--run-dir",
            str(run_dir),
            "--device",
            cfg.device,
            "--steps",
            str(10**9),
            "--quiet",
        ]
        if cfg.data_root is not None:
            cmd += ["--data-root", cfg.data_root]
        if cfg.width is not None:
            cmd += ["--g-width", str(cfg.width), "--d-width", str(cfg.width)]
        if cfg.max_images is not None:
            cmd += ["--max-images", str(cfg.max_images)]
        if cfg.log_every_steps != TrainConfig().log_every_steps:
            cmd += ["--log-every-steps", str(cfg.log_every_steps)]
        if cfg.snapshot_every_min is not None:
            cmd += ["--keep-every-minutes", f"{cfg.snapshot_every_min:g}"]
        return cmd
    spec = dict(
        recipe=recipe,
        data=cfg.data,
        data_root=cfg.data_root,
        max_images=cfg.max_images,
        image_size=cfg.shape[0],
        channels=cfg.shape[1],
        width=cfg.width or 64,
        seed=seed,
        device=cfg.device,
        run_dir=str(run_dir),
        log_every_steps=cfg.log_every_steps,
    )
    return [sys.executable, "-m", "dcgan.benchmarks.baselines", json.dumps(spec)]


def run_for_budget(
    cmd: list[str],
    *,
    started: Path,
    budget_s: float,
    log_path: Path,
    setup_timeout_s: float,
    stop_timeout_s: float,
    env: dict | None = None,
) -> dict:
    """Run ``cmd``; once ``started`` exists, let it train ``budget_s`` seconds, then SIGTERM it.

    Returns the exit code and the seconds of setup, training (from ``started`` to
    the exit) and the whole process. On an interrupt the process is stopped the
    same way (it saves its work) before the interrupt goes on.
    """
    return run_side_by_side(
        [(cmd, started, log_path)],
        budget_s=budget_s,
        setup_timeout_s=setup_timeout_s,
        stop_timeout_s=stop_timeout_s,
        env=env,
    )[0]


def run_side_by_side(
    jobs: list[tuple[list[str], Path, Path]],
    *,
    budget_s: float,
    setup_timeout_s: float,
    stop_timeout_s: float,
    env: dict | None = None,
) -> list[dict]:
    """``run_for_budget`` for several (command, started, log) jobs at once, each on its own clock.

    One loop polls every process (no threads), so an interrupt stops them all the same way.
    """
    launch = time.perf_counter()
    logs = [open(log_path, "w") for _, _, log_path in jobs]
    procs: list[subprocess.Popen] = []
    starts, stops, ends = [None] * len(jobs), [None] * len(jobs), [None] * len(jobs)
    try:
        for (cmd, _, _), log in zip(jobs, logs):
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
        while any(end is None for end in ends):
            now = time.perf_counter()
            for i, ((_, started, log_path), proc) in enumerate(zip(jobs, procs)):
                if ends[i] is not None:
                    continue
                if proc.poll() is not None:
                    ends[i] = now
                    starts[i] = now if starts[i] is None else starts[i]
                elif starts[i] is None and started.exists():
                    starts[i] = now
                elif starts[i] is None and now - launch > setup_timeout_s:
                    raise UserError(f"training did not start within {setup_timeout_s:.0f} s; see {log_path}")
                elif starts[i] is not None and stops[i] is None and now - starts[i] >= budget_s:
                    proc.send_signal(signal.SIGTERM)  # finish the step, save, exit; the others train on
                    stops[i] = now
                elif stops[i] is not None and now - stops[i] > stop_timeout_s:
                    proc.kill()
            time.sleep(0.05)
    finally:
        for proc in procs:
            _stop(proc, stop_timeout_s)
        for log in logs:
            log.close()
    return [
        {"returncode": proc.returncode, "setup_s": start - launch, "train_s": end - start, "process_s": end - launch}
        for proc, start, end in zip(procs, starts, ends)
    ]


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM: the process finishes its step, saves and exits; killed if it does not within ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _summary(run_dir: Path, checkpoint: Path) -> dict:
    """Steps, images seen and the last logged statistics of a finished run."""
    from ..runlog import read_metrics

    state = ckpt.load(checkpoint)
    detector = CollapseDetector()
    for row in read_metrics(run_dir / "metrics.jsonl"):
        if "loss_G" in row and not row.get("partial"):  # training rows; not evaluation rows
            detector.add(row)
    last = detector.last or {}
    return {
        "steps": ckpt.step_of(state),
        "images_seen": ckpt.images_seen(state),
        "last": {k: last.get(k) for k in ("step", "D_x", "D_G_z_before", "loss_G")},
        "collapsed": detector.collapsed,
        "first_collapse_step": detector.first_step,
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
    from ..metrics.report import EvalOptions, RealData, prepare, real_labels
    from ..runtime import choose_device

    size, channels = cfg.shape
    load(
        DataSpec(name=cfg.data, root=cfg.data_root, max_images=cfg.max_images, image_size=size, channels=channels),
        progress=False,
    )  # fail early
    device = choose_device(cfg.device)
    root = Path(cfg.out or f"runs/quality-{datetime.now():%Y%m%d-%H%M%S}")
    for folder in ("runs", "logs", "samples"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    real_data = RealData(data=cfg.data, data_root=cfg.data_root, image_size=size, channels=channels)
    eval_opts = EvalOptions(
        num_images=cfg.num_images, extractor=cfg.chosen_extractor, cache_dir=cfg.cache_dir, progress=False
    )
    extractor, real, key = prepare(real_data, eval_opts)
    labels = real_labels(real_data, eval_opts)  # FID per class of the conditional recipe
    env = {**os.environ, **({"OMP_NUM_THREADS": str(cfg.threads)} if cfg.threads else {})}
    results = {
        "command": command,
        "config": {
            **asdict(cfg),
            "recipes": cfg.chosen_recipes,
            "image_size": size,
            "channels": channels,
            "extractor": cfg.chosen_extractor,
        },
        "device": str(device),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "rows": [],
        "ratios": {},
    }
    tasks = [(seed, recipe) for seed in cfg.seeds for recipe in cfg.chosen_recipes]
    together = "one after another" if cfg.jobs == 1 else f"{cfg.jobs} side by side"
    out(
        f"dcgan quality: {cfg.data} at {size}x{size}, {'RGB' if channels == 3 else 'grayscale'}, scored by the "
        f"{cfg.chosen_extractor} evaluator; {', '.join(cfg.chosen_recipes)} x seeds {', '.join(map(str, cfg.seeds))}, "
        f"{_duration(cfg.budget_s)} of training each, {together}; results in {root}"
    )
    for first in range(0, len(tasks), cfg.jobs):
        batch = [(seed, recipe, f"{recipe}-seed{seed}") for seed, recipe in tasks[first : first + cfg.jobs]]
        for k, (_, _, name) in enumerate(batch):
            out(
                f"[{first + k + 1}/{len(tasks)}] {name}: training {_duration(cfg.budget_s)} "
                f"(log {root / 'logs' / f'{name}.log'})"
            )
        timings = run_side_by_side(
            [
                (
                    _command(cfg, recipe, seed, root / "runs" / name),
                    root / "runs" / name / "config.json",
                    root / "logs" / f"{name}.log",
                )
                for seed, recipe, name in batch
            ],
            budget_s=cfg.budget_s,
            setup_timeout_s=cfg.setup_timeout_s,
            stop_timeout_s=cfg.stop_timeout_s,
            env=env,
        )
        # scored after the batch has trained, one at a time: evaluation never shares the machine with training
        for (seed, recipe, name), timing in zip(batch, timings):
            run_dir, log_path = root / "runs" / name, root / "logs" / f"{name}.log"
            checkpoint = run_dir / ("checkpoints/latest.pt" if recipe in TRAINER_RECIPES else "generator.pt")
            row = {"recipe": recipe, "seed": seed, **timing}
            if timing["returncode"] not in STOP_EXIT_CODES or not checkpoint.is_file():
                tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-5:])
                row["error"] = f"exit code {timing['returncode']}; see {log_path}"
                out(f"error: {name} failed ({row['error']}):\n{tail}")
                results["rows"].append(row)
                continue
            row.update(_summary(run_dir, checkpoint))
            if row["collapsed"]:
                out(collapse_warning(recipe, seed, row["last"]) + " (at the end of training)")
            score = _scorer(cfg, device, real, extractor, key, seed, labels)
            row["eval"] = score(checkpoint, root / f"samples/{name}.png")
            row["grid"] = f"samples/{name}.png"
            out(
                f"    {row['steps']:,} steps, {row['images_seen']:,} images in {row['train_s']:.0f} s: "
                + _scores(row["eval"])
                + ("  COLLAPSED" if row["collapsed"] else "")
            )
            results["rows"].append(row)
            for minutes, snapshot in _snapshots(run_dir, below_min=cfg.budget_s / 60):
                state = ckpt.load(snapshot)
                snap = {
                    "recipe": recipe,
                    "seed": seed,
                    "at_min": minutes,
                    "train_s": ckpt.train_seconds(state),
                    "steps": ckpt.step_of(state),
                    "images_seen": ckpt.images_seen(state),
                    "eval": score(snapshot, None),
                }
                out(f"    at {minutes:g} min: {snap['steps']:,} steps: " + _scores(snap["eval"]))
                results["rows"].append(snap)
        results["ratios"] = fid_ratios(results["rows"])
        results["time_to_quality"] = time_to_quality(results["rows"])
        results["conditional_ratios"] = conditional_ratios(results["rows"])
        _write_reports(root, results)
    for seed, ratio in results["ratios"].items():
        out(
            f"seed {seed}: default FID / best baseline FID = {ratio['ratio']:.3f} "
            f"(default {ratio['default']:.3f}; best baseline {ratio['baseline']} {ratio['baseline_fid']:.3f})"
        )
    for seed, reached in results.get("time_to_quality", {}).items():
        out(f"seed {seed}: " + _reached(reached))
    for seed, ratio in results.get("conditional_ratios", {}).items():
        out(f"seed {seed}: conditional FID / default FID = {ratio:.3f}")
    out(f"wrote {root / 'results.json'} and {root / 'results.md'}")
    return results


def _scorer(cfg: QualityConfig, device, real, extractor, key, seed: int, real_labels):
    """Score a checkpoint the same way for every recipe and snapshot; write its grid when given a path.

    A conditional generator draws every class equally often, so its FID is over a uniform class
    mixture; it adds conditional accuracy and FID per class, and its grid has a row per class."""
    from ..metrics.evaluate import evaluate
    from ..sample import class_rows, generate, write

    def score(checkpoint: Path, grid: Path | None) -> dict:
        G = Generator.from_checkpoint(checkpoint, device)  # the EMA where kept; eval mode, recalibrated BN
        result = evaluate(
            G,
            real,
            extractor,
            num_images=cfg.num_images,
            seed=seed,
            cache_key=key,
            cache_dir=cfg.cache_dir,
            progress=not cfg.quick,
            precision_recall_k=3,
            real_labels=real_labels if G.num_classes else None,
        )
        if grid is not None and G.num_classes:
            images, nrow = class_rows(G, 10 * G.num_classes, seed=seed)
            write(images, grid, "grid", nrow=nrow)
        elif grid is not None:
            write(generate(G, 64, seed=seed), grid, "grid")
        return result.to_dict()

    return score


def _scores(e: dict) -> str:
    text = f"FID ({e['extractor']}, {_count(e['num_images'])}) {e['fid']:.3f}, KID {e['kid_mean']:.5f}"
    if e.get("is_mean") is not None:
        text += f", IS {e['is_mean']:.2f}"
    if e.get("min_class") is not None:
        text += f", smallest class {e['min_class']} {e['min_class_share']:.1%}"
    return text


def _count(n: int) -> str:
    """10k for 10,000: how the figures name their sample count."""
    return f"{n // 1000}k" if n % 1000 == 0 and n >= 1000 else f"{n:,}"


def _snapshots(run_dir: Path, below_min: float) -> list[tuple[float, Path]]:
    """The trainer's checkpoints/minute_M.pt (--keep-every-minutes) before the budget's end, by minute.

    One at the budget itself may or may not land before SIGTERM; the final row covers that minute."""
    found = [(float(p.stem.removeprefix("minute_")), p) for p in (run_dir / "checkpoints").glob("minute_*.pt")]
    return sorted((m, p) for m, p in found if m < below_min - 1e-9)


def time_to_quality(rows: list[dict]) -> dict[int, dict]:
    """Per seed: the first snapshot of the default recipe whose FID is at most the better baseline's final FID."""
    ratios = fid_ratios(rows)
    reached = {}
    for seed, ratio in ratios.items():
        snaps = sorted(
            (r["at_min"], r["eval"]["fid"])
            for r in rows
            if r["recipe"] == "default" and r["seed"] == seed and "at_min" in r
        )
        if not snaps:
            continue
        first = next(((m, fid) for m, fid in snaps if fid <= ratio["baseline_fid"]), None)
        reached[seed] = {
            "baseline": ratio["baseline"],
            "baseline_fid": ratio["baseline_fid"],
            "minutes": None if first is None else first[0],
            "fid": None if first is None else first[1],
            "snapshots": [m for m, _ in snaps],
        }
    return reached


def _reached(r: dict) -> str:
    if r["minutes"] is None:
        return (
            f"no default snapshot ({', '.join(f'{m:g}' for m in r['snapshots'])} min) reached the "
            f"{r['baseline']}'s final FID {r['baseline_fid']:.3f}"
        )
    return (
        f"the default reached the {r['baseline']}'s final FID {r['baseline_fid']:.3f} by "
        f"{r['minutes']:g} min of training (FID {r['fid']:.3f})"
    )


def conditional_ratios(rows: list[dict]) -> dict[int, float]:
    """Per seed: the conditional recipe's FID (uniform class mixture) over the unconditional default's."""
    fids = {(r["recipe"], r["seed"]): r["eval"]["fid"] for r in rows if "eval" in r and "at_min" not in r}
    return {
        seed: fids[("conditional", seed)] / fids[("default", seed)]
        for recipe, seed in sorted(fids)
        if recipe == "conditional" and ("default", seed) in fids
    }


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def fid_ratios(rows: list[dict]) -> dict[int, dict]:
    """Per seed: default's FID over the better (lower) of the classic and newcomer FIDs."""
    fids = {(r["recipe"], r["seed"]): r["eval"]["fid"] for r in rows if "eval" in r and "at_min" not in r}
    ratios = {}
    for seed in sorted({s for _, s in fids}):
        baselines = {r: fids[(r, seed)] for r in BASELINES if (r, seed) in fids}
        if ("default", seed) in fids and baselines:
            best = min(baselines, key=baselines.get)
            ratios[seed] = {
                "ratio": fids[("default", seed)] / baselines[best],
                "default": fids[("default", seed)],
                "baseline": best,
                "baseline_fid": baselines[best],
            }
    return ratios


def _write_reports(root: Path, results: dict) -> None:
    """results.json and results.md, each replaced atomically: a run cut short leaves whole files."""
    for name, text in (
        ("results.json", json.dumps(results, indent=2) + "\n"),
        ("results.md", format_markdown(results)),
    ):
        write_text_atomic(root / name, text)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _smallest(e: dict) -> str:
    return "-" if e.get("min_class") is None else f"{e['min_class']}: {e['min_class_share']:.1%}"


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
        "# Sample quality for equal training time",
        "",
        (f"`{results['command']}` " if results.get("command") else "")
        + f"on {results['device']} ({results['cpu_count']} CPUs, torch {results['torch']}): "
        f"{_duration(cfg['budget_s'])} of training per recipe and seed, "
        + ("one run at a time" if cfg.get("jobs", 1) == 1 else f"{cfg['jobs']} runs side by side")
        + (f" ({cfg['threads']} thread{'s' if cfg['threads'] > 1 else ''} each)" if cfg.get("threads") else "")
        + "; "
        f"{cfg['num_images']:,} generated images per evaluation, scored in the features of the "
        f"`{cfg.get('extractor', 'digits')}` evaluator against the {cfg['data']} training images"
        + (f" at {cfg['image_size']}x{cfg['image_size']}" if cfg.get("image_size") else "")
        + ". Every generator (the EMA one for `default`) is sampled in eval mode "
        "with its batch-norm statistics recalibrated on noise.",
        "",
        f"| recipe | seed | FID ({cfg.get('extractor', 'digits')}, {_count(cfg['num_images'])}) | KID | IS | precision | recall | smallest class | largest class | train time | steps "
        "| images seen | collapsed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["rows"]:
        if "eval" not in r:
            lines.append(f"| {r['recipe']} | {r['seed']} | failed: {r['error']} | | | | | | | | | | |")
            continue
        e = r["eval"]
        snapshot = "at_min" in r
        recipe = f"{r['recipe']} at {r['at_min']:g} min" if snapshot else r["recipe"]
        lines.append(
            f"| {recipe} | {r['seed']} | {e['fid']:.2f} | {e['kid_mean']:.4f} | {_share(e.get('is_mean'))} | "
            f"{_share(e.get('precision'))} | {_share(e.get('recall'))} | "
            f"{_smallest(e)} | {_largest(e)} | {_duration(r['train_s'])} | {r['steps']:,} | "
            f"{r['images_seen']:,} | {'-' if snapshot else '**yes**' if r['collapsed'] else 'no'} |"
        )
    lines.append("")
    for seed, ratio in results["ratios"].items():
        lines.append(
            f"- seed {seed}: default FID / best baseline FID = **{ratio['ratio']:.3f}** "
            f"({ratio['baseline']} was the better baseline)"
        )
    for seed, reached in results.get("time_to_quality", {}).items():
        lines.append(f"- seed {seed}: {_reached(reached)}")
    for seed, ratio in results.get("conditional_ratios", {}).items():
        lines.append(f"- seed {seed}: conditional FID (every class alike) / default FID = **{ratio:.3f}**")
    for r in results["rows"]:
        e = r.get("eval") or {}
        if e.get("conditional_accuracy") is not None and "at_min" not in r:
            lines.append(
                f"- {r['recipe']} seed {r['seed']}: conditional accuracy **{e['conditional_accuracy']:.2%}** "
                f"of {e['num_images']:,} images; FID per class "
                + ", ".join(f"{k} {v:.2f}" for k, v in (e.get("class_fid") or {}).items())
            )
    lines += [
        "",
        "Collapsed: D(x) > 0.99, D(G(z)) < 0.01 and loss_G > 5 over the last "
        f"3 logged windows of {cfg['log_every_steps']} steps.",
        "",
    ]
    for r in results["rows"]:
        if "grid" in r:
            lines.append(f"![{r['recipe']} seed {r['seed']}]({r['grid']})")
    return "\n".join(lines) + "\n"
