"""train: an end-to-end training run with every artifact, compile fall-back, schedules, budgets, recipes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from dcgan import Discriminator, Generator, TrainConfig
from dcgan import checkpoint as ckpt
from dcgan.runtime import resolve_precision
from dcgan.train import lr_factor, train

# --------------------------------------------------------------------------- a whole run

METRIC_KEYS = {"step", "epoch", "loss_D", "loss_G", "D_x", "D_G_z_before", "D_G_z_after", "img_per_s"}


def test_end_to_end_run_writes_every_artifact(tmp_path, capsys):
    cfg = TrainConfig(
        max_images=64,
        g_width=8,
        d_width=8,
        batch_size=16,
        epochs=None,
        steps=6,
        log_every_steps=2,
        sample_every_steps=3,
        checkpoint_every_steps=3,
        num_samples=16,
        quiet=True,
        device="cpu",
        num_workers=0,
        run_dir=str(tmp_path / "run"),
    )
    run_dir = train(cfg)
    assert run_dir == tmp_path / "run"

    # config.json: the resolved configuration
    config = json.loads((run_dir / "config.json").read_text())
    resolved = config.pop("resolved")
    assert config == cfg.to_dict() == TrainConfig.from_dict(config).to_dict()
    assert config["run_dir"] == str(run_dir)
    assert resolved["total_steps"] == 6 and resolved["steps_per_epoch"] == 4
    assert resolved["num_images"] == 64
    expected_precision = resolve_precision("auto", torch.device("cpu"))  # bf16 where the CPU has it natively
    assert (resolved["device"], resolved["precision"], resolved["world_size"]) == ("cpu", expected_precision, 1)

    # metrics.jsonl: one row per log step, every statistic; 4 steps per epoch
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in rows] == [(2, 0), (4, 0), (6, 1)]
    for r in rows:
        assert set(r) == METRIC_KEYS
        assert all(math.isfinite(r[k]) for k in METRIC_KEYS)
        assert r["loss_D"] > 0 and r["loss_G"] > 0 and r["img_per_s"] > 0
        assert all(0 < r[k] < 1 for k in ("D_x", "D_G_z_before", "D_G_z_after"))
    # --quiet: the same rows as JSON lines on stdout, no progress bar
    out = capsys.readouterr()
    printed = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    assert printed == rows
    assert "step/s" not in out.err and "it/s" not in out.err

    # sample grids of the fixed noise: 16 images of 28 px, 4 x 4 with 2 px padding
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "final.png",
        "progress.gif",
        "step_0000003.png",
        "step_0000006.png",
    ]
    for name in ("final.png", "step_0000006.png"):
        with Image.open(run_dir / "samples" / name) as grid:
            assert grid.format == "PNG" and grid.size == (4 * 30 + 2, 4 * 30 + 2)
    with Image.open(run_dir / "losses.png") as plot:
        assert plot.format == "PNG" and plot.size[0] > 100 and plot.size[1] > 100

    # the checkpoint: everything needed to resume
    state = ckpt.load(run_dir)
    assert {"G", "D", "opt_G", "opt_D", "step", "config"} <= set(state)
    assert state["step"] == 6 and state["epoch"] == 1
    assert state["config"] == cfg.to_dict()
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["latest.pt"]  # no temp files left
    G, D = Generator(width=8), Discriminator(width=8)
    G.load_state_dict(state["G"], strict=True)
    D.load_state_dict(state["D"], strict=True)
    assert len(state["opt_G"]["state"]) == len(list(G.parameters()))
    assert all(s["step"] == 6 for s in state["opt_D"]["state"].values())  # Adam took 6 steps
    G.eval()
    with torch.no_grad():
        images = G(torch.randn(4, 100))
    assert images.shape == (4, 1, 28, 28) and torch.isfinite(images).all()


def test_compile_failure_falls_back_to_eager_with_a_notice(tmp_path, monkeypatch, capsys):
    """torch.compile compiles lazily; a backend that fails in the first step leaves an eager run."""
    import torch

    from dcgan.config import TrainConfig
    from dcgan.train import Trainer

    class Broken(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: Broken(module))
    trainer = Trainer(
        TrainConfig(
            g_width=8,
            d_width=8,
            batch_size=8,
            max_images=64,
            steps=2,
            quiet=True,
            compile=True,
            device="cpu",
            run_dir=str(tmp_path / "run"),
        )
    )
    trainer.run()
    assert trainer.step == 2 and trainer.d_steps == 2
    assert (
        "notice: torch.compile failed (RuntimeError: no C++ compiler found); running eagerly" in capsys.readouterr().out
    )


def test_compile_mode_reaches_torch_compile(tmp_path, monkeypatch):
    import torch

    from dcgan.config import TrainConfig
    from dcgan.train import Trainer

    modes = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: modes.append(kwargs.get("mode")) or module)
    Trainer(
        TrainConfig(
            g_width=8,
            d_width=8,
            batch_size=8,
            max_images=64,
            steps=1,
            quiet=True,
            compile=True,
            compile_mode="reduce-overhead",
            device="cpu",
            run_dir=str(tmp_path / "run"),
        )
    ).run()
    assert modes == ["reduce-overhead", "reduce-overhead"]  # G and D


# data="fake" is not digits: at 28x28 its D defaults to 32 (config.default_widths)
@pytest.mark.parametrize(
    "image_size, channels, widths",
    [(28, 1, (64, 32)), (32, 3, (32, 32)), (32, 1, (32, 32)), (64, 3, (32, 16)), (128, 3, (64, 64))],
)
def test_widths_default_by_image_size(tmp_path, image_size, channels, widths):
    from dcgan.train import Trainer

    assert TrainConfig().g_width is TrainConfig().d_width is None  # filled in per run, from its image size
    cfg = TrainConfig(
        data="fake",
        image_size=image_size,
        channels=channels,
        batch_size=4,
        max_images=8,
        steps=1,
        quiet=True,
        device="cpu",
        run_dir=str(tmp_path / "run"),
    )
    trainer = Trainer(cfg)
    assert (trainer.G.width, trainer.D.width) == (trainer.cfg.g_width, trainer.cfg.d_width) == widths
    trainer.run()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["g_width"], config["d_width"]) == widths
    assert ckpt.load(tmp_path / "run")["config"]["g_width"] == widths[0]  # what a loader rebuilds G from
    given = TrainConfig(image_size=image_size, g_width=8, d_width=8).resolved()
    assert (given.g_width, given.d_width) == (8, 8)  # given widths win
    assert (
        TrainConfig(data="fake", image_size=image_size, g_width=8).resolved().d_width == widths[1]
    )  # only what was given


# --------------------------------------------------------------------------- recipe knobs: R1, schedules, budgets


@pytest.mark.parametrize(
    ("schedule", "progress", "expected"),
    [
        ("constant", 0.7, 1.0),
        ("linear", 0.0, 1.0),
        ("linear", 0.25, 0.75),
        ("linear", 1.0, 0.0),
        ("cosine", 0.0, 1.0),
        ("cosine", 0.5, 0.5),
        ("cosine", 1.0, 0.0),
        ("cosine", 1.5, 0.0),
    ],
)
def test_lr_factor(schedule, progress, expected):
    assert lr_factor(schedule, progress, step=1000, warmup_steps=0) == pytest.approx(expected, abs=1e-12)


def test_lr_warm_up_is_linear_then_the_schedule():
    assert [lr_factor("constant", 0.0, step=s, warmup_steps=4) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert lr_factor("linear", 0.5, step=1, warmup_steps=4) == pytest.approx(0.5 * 0.5)


TINY_RUN = [
    "--g-width",
    "8",
    "--d-width",
    "8",
    "--batch-size",
    "16",
    "--max-images",
    "64",
    "--quiet",
    "--device",
    "cpu",
    "--log-every-steps",
    "2",
    "--sample-every-steps",
    "1000",
    "--num-workers",
    "0",
]


def test_the_schedule_reaches_the_optimizers(tmp_path):
    from dcgan.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--steps",
                "8",
                "--lr-schedule",
                "cosine",
                "--lr-g",
                "3e-4",
                "--lr-d",
                "2e-4",
                "--run-dir",
                str(run),
                *TINY_RUN,
            ]
        )
        == 0
    )
    state = ckpt.load(run)
    factor = lr_factor("cosine", 7 / 8, step=7, warmup_steps=0)  # set before the last step (0-based 7)
    assert state["opt_G"]["param_groups"][0]["lr"] == pytest.approx(3e-4 * factor, rel=1e-12)
    assert state["opt_D"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * factor, rel=1e-12)


@pytest.mark.slow
def test_a_time_budget_ends_the_run_and_resumes_with_a_larger_one(tmp_path, capsys):
    from dcgan.cli import main

    run = tmp_path / "run"
    assert main(["train", "--minutes", "0.02", "--keep-every-minutes", "0.01", "--run-dir", str(run), *TINY_RUN]) == 0
    state = ckpt.load(run)
    kept = {p.name: p.read_bytes() for p in (run / "checkpoints").glob("minute_*.pt")}
    assert set(kept) == {"minute_0.01.pt", "minute_0.02.pt"}
    assert state["train_seconds"] >= 1.2 and state["step"] >= 1
    assert state["config"]["epochs"] is None and state["config"]["steps"] is None
    assert (run / "samples" / "final.png").is_file()
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    assert "has used its 0.02-minute budget" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--minutes", "0.04"]) == 0
    again = ckpt.load(run)
    assert again["step"] > state["step"] and again["train_seconds"] >= 2.4
    # a snapshot at the first step past each 0.6 s of training time, over both parts of the run
    snapshots = {p.name: ckpt.load(p) for p in (run / "checkpoints").glob("minute_*.pt")}
    assert sorted(snapshots) == ["minute_0.01.pt", "minute_0.02.pt", "minute_0.03.pt", "minute_0.04.pt"]
    steps = [snapshots[f"minute_0.0{k}.pt"]["step"] for k in range(1, 5)]
    assert steps == sorted(steps) and len(set(steps)) == 4
    for k in range(1, 5):
        assert snapshots[f"minute_0.0{k}.pt"]["train_seconds"] >= 0.6 * k
    assert all((run / "checkpoints" / name).read_bytes() == data for name, data in kept.items())  # not rewritten


def test_the_paper_recipe_is_one_flag_and_options_still_win(tmp_path):
    from dcgan.cli import main

    run = tmp_path / "paper"
    assert main(["train", "--recipe", "paper", "--steps", "2", "--run-dir", str(run), *TINY_RUN]) == 0
    cfg = ckpt.load(run)["config"]
    assert cfg["recipe"] == "paper"
    assert (cfg["lr_g"], cfg["lr_d"], cfg["beta1"], cfg["beta2"], cfg["ema_decay"], cfg["r1_gamma"]) == (
        2e-4,
        2e-4,
        0.5,
        0.999,
        0.0,
        0.0,
    )
    assert (cfg["batch_size"], cfg["g_width"], cfg["d_width"]) == (16, 8, 8)  # given on the command line
    paper = TrainConfig.for_recipe("paper")
    assert (paper.batch_size, paper.g_width, paper.d_width, paper.precision) == (128, 64, 64, "fp32")


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(
        steps=3,
        precision="bf16",
        device="cpu",
        g_width=8,
        d_width=8,
        batch_size=16,
        max_images=64,
        quiet=True,
        run_dir=str(run),
    )
    train(cfg)
    state = ckpt.load(run)
    assert state["step"] == 3 and all(v.dtype == torch.float32 for v in state["G"].values() if v.is_floating_point())
    assert json.loads((run / "config.json").read_text())["resolved"]["precision"] == "bf16"


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_follows_native_bf16(monkeypatch, native, expected):
    from dcgan import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == expected
    assert runtime.resolve_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True])
def test_compile_on_cpu_stays_compiled_through_the_lazy_r1_steps(tmp_path, capsys, conditional):
    """R1's double backward cannot be compiled: its steps run eagerly, the others compiled, no fall-back."""
    from dcgan.train import Trainer

    trainer = Trainer(
        TrainConfig(
            g_width=8,
            d_width=8,
            batch_size=8,
            max_images=64,
            steps=3,
            quiet=True,
            compile=True,
            device="cpu",
            r1_every_steps=2,
            conditional=conditional,
            num_workers=0,
            run_dir=str(tmp_path / "run"),
        )
    )
    trainer.run()
    assert trainer.train_step.compiled and trainer.step == 3 and trainer.d_steps == 3
    assert "torch.compile failed" not in capsys.readouterr().out
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())


def test_keep_every_steps_keeps_its_own_steps_whatever_the_checkpoint_cadence(tmp_path):
    cfg = TrainConfig(
        max_images=64, g_width=8, d_width=8, batch_size=16, steps=6, log_every_steps=2, sample_every_steps=100,
        checkpoint_every_steps=5, keep_every_steps=2, num_samples=16, quiet=True, device="cpu", num_workers=0,
        run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    run_dir = train(cfg)
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))
    assert kept == ["step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    assert [ckpt.step_of(ckpt.load(run_dir / "checkpoints" / name)) for name in kept] == [2, 4, 6]
