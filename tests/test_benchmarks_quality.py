"""The quality benchmark: its collapse rule, its budgeted subprocesses, and a quick end-to-end run."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch
from PIL import Image

from dcgan import checkpoint as ckpt
from dcgan.benchmarks.baselines import BASELINES, CollapseDetector, PILImages
from dcgan.benchmarks.quality import (
    COLOUR_RECIPES,
    DEFAULT_RECIPES,
    RECIPES,
    QualityConfig,
    command_line,
    fid_ratios,
    run_for_budget,
    run_side_by_side,
    time_to_quality,
)
from dcgan.cli import main
from dcgan.config import TrainConfig
from dcgan.data import to_model_range
from dcgan.metrics import evaluate
from dcgan.metrics.report import EvalOptions, prepare
from dcgan.models import Generator

COLLAPSED = {"D_x": 0.999, "D_G_z_before": 0.001, "loss_G": 30.0}
HEALTHY = {"D_x": 0.7, "D_G_z_before": 0.3, "loss_G": 1.5}


# --------------------------------------------------------------------------- collapse


def test_collapse_needs_a_full_stretch_and_is_reported_once():
    detector = CollapseDetector(stretch_rows=3)
    assert [detector.add({"step": s, **COLLAPSED}) for s in (50, 100)] == [False, False]
    assert not detector.collapsed
    assert detector.add({"step": 150, **COLLAPSED}) is True
    assert detector.collapsed and detector.first_step == 150
    assert detector.add({"step": 200, **COLLAPSED}) is False  # still collapsed, not news
    assert detector.last["step"] == 200


def test_collapse_is_about_the_last_stretch():
    detector = CollapseDetector(stretch_rows=3)
    for step, row in zip(range(50, 300, 50), (COLLAPSED, COLLAPSED, HEALTHY, COLLAPSED, COLLAPSED)):
        assert detector.add({"step": step, **row}) is False
    assert not detector.collapsed and detector.first_step is None
    for step in (300, 350, 400):
        detector.add({"step": step, **COLLAPSED})
    assert detector.collapsed and detector.first_step == 300
    detector.add({"step": 450, **HEALTHY})  # it recovered: not collapsed now, but it was
    assert not detector.collapsed and detector.first_step == 300


@pytest.mark.parametrize("change", [{"D_x": 0.99}, {"D_G_z_before": 0.01}, {"loss_G": 5.0}, {"D_x": 0.5}])
def test_collapse_needs_every_condition(change):
    detector = CollapseDetector(stretch_rows=2)
    for step in (1, 2):
        detector.add({"step": step, **COLLAPSED, **change})
    assert not detector.collapsed


def test_an_empty_detector_has_nothing_to_report():
    detector = CollapseDetector()
    assert not detector.collapsed and detector.last is None and detector.first_step is None


# --------------------------------------------------------------------------- pieces


def test_fid_ratio_takes_the_better_baseline_per_seed():
    rows = [
        {"recipe": "default", "seed": 0, "eval": {"fid": 2.0}},
        {"recipe": "classic", "seed": 0, "eval": {"fid": 8.0}},
        {"recipe": "newcomer", "seed": 0, "eval": {"fid": 5.0}},
        {"recipe": "default", "seed": 1, "eval": {"fid": 3.0}},
        {"recipe": "classic", "seed": 1, "error": "exit code 1"},  # no baseline for seed 1
    ]
    ratios = fid_ratios(rows)
    assert list(ratios) == [0]
    assert ratios[0] == {"ratio": 2.0 / 5.0, "default": 2.0, "baseline": "newcomer", "baseline_fid": 5.0}


def test_time_to_quality_is_the_first_default_snapshot_at_the_better_baselines_fid():
    rows = [
        {"recipe": "default", "seed": 0, "eval": {"fid": 1.5}},
        {"recipe": "default", "seed": 0, "at_min": 6.0, "eval": {"fid": 2.0}},
        {"recipe": "default", "seed": 0, "at_min": 3.0, "eval": {"fid": 4.5}},
        {"recipe": "newcomer", "seed": 0, "eval": {"fid": 4.0}},
        {"recipe": "default", "seed": 1, "eval": {"fid": 3.9}},
        {"recipe": "default", "seed": 1, "at_min": 3.0, "eval": {"fid": 9.0}},
        {"recipe": "newcomer", "seed": 1, "eval": {"fid": 4.0}},
    ]
    assert fid_ratios(rows)[0]["default"] == 1.5  # snapshots are not the final row
    reached = time_to_quality(rows)
    assert reached[0]["minutes"] == 6.0 and reached[0]["fid"] == 2.0 and reached[0]["snapshots"] == [3.0, 6.0]
    assert reached[1]["minutes"] is None and reached[1]["baseline_fid"] == 4.0


@pytest.mark.slow
def test_side_by_side_jobs_each_train_their_budget_on_their_own_clock(tmp_path):
    def job(name, delay_s):
        started = tmp_path / f"started-{name}"
        script = (
            "import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
            f"time.sleep({delay_s})\n"
            f"pathlib.Path({str(started)!r}).write_text('')\n"
            "while True: time.sleep(0.01)\n"
        )
        return [sys.executable, "-c", script], started, tmp_path / f"log-{name}"

    launch = time.perf_counter()
    timings = run_side_by_side([job("a", 0.0), job("b", 1.0)], budget_s=0.5, setup_timeout_s=60, stop_timeout_s=60)
    wall = time.perf_counter() - launch
    assert [t["returncode"] for t in timings] == [143, 143]
    assert all(t["train_s"] >= 0.5 for t in timings)
    assert timings[1]["setup_s"] >= timings[0]["setup_s"] + 0.9  # b started later and trained as long
    assert wall < timings[0]["process_s"] + timings[1]["process_s"]  # at the same time, not one after the other


def test_baseline_pipelines_serve_torchvision_style_digits(mnist5k):
    images = mnist5k.images[:8]
    newcomer = PILImages(images, BASELINES["newcomer"].transform(28, 1))
    x, label = newcomer[3]
    # ToTensor then Normalize(0.5, 0.5) is the project's own scaling, to rounding
    torch.testing.assert_close(x, to_model_range(images[3]), rtol=0, atol=1e-6)
    assert label == 0 and len(newcomer) == 8
    size = BASELINES["classic"].image_size(28, 1)
    classic, _ = PILImages(images, BASELINES["classic"].transform(size, 1))[3]
    assert size == 64 and classic.shape == (1, 64, 64) and classic.min() >= -1 and classic.max() <= 1


def test_classic_baseline_trains_colour_at_its_own_size():
    """The classic loop at the data's size for colour: PIL RGB images, scaled like the project's."""
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    size = BASELINES["classic"].image_size(32, 3)
    x, _ = PILImages(images, BASELINES["classic"].transform(size, 3))[2]
    assert size == 32
    torch.testing.assert_close(x, to_model_range(images[2]), rtol=0, atol=1e-6)


def test_command_line_reproduces_the_config():
    cfg = QualityConfig(data_root="../shared/data/mnist", budget_s=15 * 60, seeds=(0, 1, 2), out="q")
    assert command_line(cfg) == "dcgan quality --data-root ../shared/data/mnist --seeds 0,1,2 --out q"
    assert command_line(QualityConfig.quick_config(budget_s=90.0)) == "dcgan quality --quick --budget-min 1.5"


@pytest.mark.slow
def test_budgeted_process_trains_from_its_start_and_stops_on_sigterm(tmp_path):
    started = tmp_path / "started"
    script = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        f"pathlib.Path({str(started)!r}).write_text('')\n"
        "while True: time.sleep(0.01)\n"
    )
    timing = run_for_budget(
        [sys.executable, "-c", script],
        started=started,
        budget_s=0.3,
        log_path=tmp_path / "log",
        setup_timeout_s=60,
        stop_timeout_s=60,
    )
    assert timing["returncode"] == 143
    assert timing["train_s"] >= 0.3  # the budget counts from the start of training, then SIGTERM
    assert timing["process_s"] == pytest.approx(timing["setup_s"] + timing["train_s"])


@pytest.mark.parametrize(
    "argv",
    [
        ["--recipes", "default,bogus"],
        ["--budget-min", "0"],
        ["--data", "cifar10", "--recipes", "default,newcomer"],
        ["--image-size", "48"],
        ["--channels", "2"],
        ["--max-images", "10"],
        ["--num-images", "1"],
        ["--seeds", "1,1"],
        ["--jobs", "0"],
        ["--snapshot-every-min", "0.2"],
    ],
)
def test_bad_options_fail_in_one_line_before_any_work(argv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["quality", "--quick", "--data", "mnist-5k", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_used_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert main(["quality", "--quick", "--data", "mnist-5k", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "quality"
    assert main(["quality", "--quick", "--data", "mnist-5k", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["command"] == f"dcgan quality --quick --data mnist-5k --out {out}"
    rows = {r["recipe"]: r for r in results["rows"]}
    assert list(rows) == list(QualityConfig().chosen_recipes) == list(DEFAULT_RECIPES) and all(
        r["seed"] == 0 for r in rows.values()
    )

    batch_sizes = {"default": TrainConfig().batch_size, "classic": 64, "newcomer": 128, "paper": 128}
    image_sizes = {"default": 28, "classic": 64, "newcomer": 28, "paper": 28}
    # every recipe is scored against the same real digits at 28x28, whatever size it trains at
    extractor, real, _ = prepare(
        TrainConfig(data="mnist-5k", image_size=28, channels=1), EvalOptions(num_images=200, progress=False)
    )
    for recipe, row in rows.items():
        assert "error" not in row and row["returncode"] in (0, 143)
        e = row["eval"]
        assert e["num_images"] == 200 and e["extractor"] == "digits"
        # the row holds what dcgan eval measures for that checkpoint and seed
        checkpoint = (
            out
            / "runs"
            / f"{recipe}-seed0"
            / ("checkpoints/latest.pt" if recipe in ("default", "paper") else "generator.pt")
        )
        again = evaluate(
            Generator.from_checkpoint(checkpoint, torch.device("cpu")),
            real,
            extractor,
            num_images=200,
            seed=0,
            progress=False,
            precision_recall_k=3,
        )
        for key in ("fid", "kid_mean", "is_mean", "min_class_share", "precision", "recall"):
            assert e[key] == pytest.approx(getattr(again, key), rel=1e-6), (recipe, key)
        assert e["min_class_share"] == min(e["class_shares"].values())
        assert sum(e["class_shares"].values()) == pytest.approx(1.0)
        # 512 images: every batch is full, so images are steps x batch
        assert row["steps"] > 0 and row["images_seen"] == row["steps"] * batch_sizes[recipe]
        assert row["train_s"] >= 3.0 and isinstance(row["collapsed"], bool)
        assert row["last"]["step"] is not None and 0 <= row["last"]["D_x"] <= 1
        grid = Image.open(out / row["grid"])
        assert grid.size == (8 * (image_sizes[recipe] + 2) + 2,) * 2  # 64 samples, 2-pixel padding

    # the default recipe is dcgan train's defaults, with only the quick sizes changed
    default_cfg = ckpt.load(out / "runs/default-seed0/checkpoints/latest.pt")["config"]
    expected = TrainConfig()
    for key in ("batch_size", "ema_decay", "lr_g", "lr_d", "r1_gamma", "lr_schedule", "precision"):
        assert default_cfg[key] == getattr(expected, key), key
    assert default_cfg["g_width"] == 8 and default_cfg["recipe"] == "default"
    # the paper row is the trainer with Radford et al.'s recipe
    paper_cfg = ckpt.load(out / "runs/paper-seed0/checkpoints/latest.pt")["config"]
    assert (
        paper_cfg["recipe"],
        paper_cfg["batch_size"],
        paper_cfg["lr_g"],
        paper_cfg["lr_d"],
        paper_cfg["ema_decay"],
        paper_cfg["beta1"],
    ) == ("paper", 128, 2e-4, 2e-4, 0.0, 0.5)
    # the baselines' generators are checkpoints that sample and eval read
    for recipe in ("classic", "newcomer"):
        G = Generator.from_checkpoint(out / f"runs/{recipe}-seed0/generator.pt", torch.device("cpu"))
        assert G.image_size == image_sizes[recipe] and not G.training

    fids = {recipe: rows[recipe]["eval"]["fid"] for recipe in rows}
    ratio = results["ratios"]["0"]["ratio"]
    assert ratio == pytest.approx(fids["default"] / min(fids["classic"], fids["newcomer"]))
    assert f"= {ratio:.3f}" in printed
    table = (out / "results.md").read_text()
    for recipe in rows:
        assert f"| {recipe} | 0 | {fids[recipe]:.2f} |" in table
        shares = rows[recipe]["eval"]["class_shares"]
        largest = max(shares, key=shares.get)
        assert f"| {largest}: {shares[largest]:.1%} |" in table
        assert f"samples/{recipe}-seed0.png" in table


@pytest.mark.slow
def test_quick_conditional_row_is_scored_against_the_default_of_the_same_run(tmp_path, capsys):
    out = tmp_path / "quality"
    assert (
        main(
            [
                "quality",
                "--quick",
                "--data",
                "mnist-5k",
                "--recipes",
                "default,conditional",
                "--jobs",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "conditional" in RECIPES and "conditional" not in QualityConfig().chosen_recipes
    results = json.loads((out / "results.json").read_text())
    rows = {r["recipe"]: r for r in results["rows"]}
    config = ckpt.load(out / "runs/conditional-seed0/checkpoints/latest.pt")["config"]
    assert config["conditional"] is True and config["recipe"] == "default"
    e = rows["conditional"]["eval"]
    assert 0 <= e["conditional_accuracy"] <= 1 and list(e["class_fid"]) == [str(k) for k in range(10)]
    assert rows["default"]["eval"]["conditional_accuracy"] is None
    ratio = results["conditional_ratios"]["0"]
    assert ratio == pytest.approx(e["fid"] / rows["default"]["eval"]["fid"])
    assert f"conditional FID / default FID = {ratio:.3f}" in capsys.readouterr().out
    grid = Image.open(out / "samples/conditional-seed0.png")
    assert grid.size == (10 * 30 + 2, 10 * 30 + 2)  # ten columns, one row per class


@pytest.mark.slow
def test_quick_colour_benchmark_has_the_classic_at_the_same_size_and_the_paper_row(tmp_path, capsys):
    """Colour data: default, classic (at the data's size, RGB) and paper, scored by the CIFAR-10 evaluator."""
    folder = tmp_path / "faces"
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(256):
        pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=g)
        Image.fromarray(pixels.numpy()).save(folder / f"{i:03d}.png")
    out = tmp_path / "quality"
    assert (
        main(
            [
                "quality",
                "--quick",
                "--data",
                "folder",
                "--data-root",
                str(folder),
                "--image-size",
                "32",
                "--max-images",
                "256",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    rows = {r["recipe"]: r for r in results["rows"]}
    assert list(rows) == list(COLOUR_RECIPES) == ["default", "classic", "paper"]
    assert results["config"]["extractor"] == "cifar10" and results["config"]["image_size"] == 32
    for recipe, row in rows.items():
        assert "error" not in row and row["eval"]["extractor"] == "cifar10", recipe
        assert Image.open(out / row["grid"]).size == (8 * 34 + 2,) * 2 and Image.open(out / row["grid"]).mode == "RGB"
    G = Generator.from_checkpoint(out / "runs/classic-seed0/generator.pt", torch.device("cpu"))
    assert (G.image_size, G.channels) == (32, 3)
    assert "FID (cifar10, 200)" in printed and "| FID (cifar10, 200) |" in (out / "results.md").read_text()
