"""The command line in-process (``main(argv) -> int``): train, sample, and one-line user errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan import Generator, TrainConfig
from dcgan import checkpoint as ckpt
from dcgan.cli import main


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) with stdout and stderr captured (module-scoped fixtures cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def make_image_folder(root: Path, count: int = 12) -> Path:
    """Random RGB images of mixed sizes and formats in nested folders, plus one corrupt file."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / ("jpeg" if i % 2 else "png") / f"part{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        h, w = 32 + 4 * (i % 4), 40 - 2 * (i % 3)
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        image.save(folder / (f"{i}.jpg" if i % 2 else f"{i}.png"))
    (root / "png" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory, tiny_train):
    """A tiny model trained by the CLI on the built-in digits, shared by the sampling tests."""
    run_dir = tmp_path_factory.mktemp("cli") / "digits"
    code, out, err = run_main(["train", *tiny_train, "--run-dir", str(run_dir)])
    return run_dir, code, out, err


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, tiny_train):
    """A tiny RGB 32x32 model trained by the CLI on a folder of images."""
    base = tmp_path_factory.mktemp("cli-folder")
    images = make_image_folder(base / "images")
    run_dir = base / "run"
    code, out, err = run_main(
        [
            "train",
            *tiny_train,
            "--data",
            "folder",
            "--data-root",
            str(images),
            "--channels",
            "3",
            "--image-size",
            "32",
            "--batch-size",
            "4",
            "--run-dir",
            str(run_dir),
        ]
    )
    return run_dir, code, out, err


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- train


def test_train_on_builtin_data_writes_every_artifact(builtin_run):
    run_dir, code, out, err = builtin_run
    assert code == 0, err
    assert err == ""  # --quiet: no progress bars, no warnings

    config = json.loads((run_dir / "config.json").read_text())
    assert (config["data"], config["image_size"], config["channels"]) == ("mnist-5k", 28, 1)
    assert (config["g_width"], config["d_width"], config["batch_size"]) == (8, 8, 16)
    assert (config["steps"], config["epochs"], config["max_images"]) == (4, None, 64)  # --steps alone
    assert config["lr_g"] == TrainConfig().lr_g == 4e-4  # untouched options keep their defaults
    assert config["resolved"]["total_steps"] == 4

    rows = metric_rows(run_dir)
    assert [r["step"] for r in rows] == [2, 4]
    assert set(rows[0]) == {"step", "epoch", "loss_D", "loss_G", "D_x", "D_G_z_before", "D_G_z_after", "img_per_s"}
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert printed == rows
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
        "final.png",
        "progress.gif",
        "step_0000002.png",
        "step_0000004.png",
    ]
    assert (run_dir / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert {"G", "D", "opt_G", "opt_D", "step", "config"} <= set(state) and state["step"] == 4
    assert str(run_dir) in out.splitlines()[-1]  # the closing line says where everything is


def test_train_on_an_image_folder(folder_run):
    run_dir, code, out, err = folder_run
    assert code == 0, err
    assert "skipped 1 unreadable image file(s)" in out and "broken.png" in out
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["data"], config["channels"], config["image_size"]) == ("folder", 3, 32)
    assert config["resolved"]["num_images"] == 12 and config["resolved"]["steps_per_epoch"] == 3
    assert [(r["step"], r["epoch"]) for r in metric_rows(run_dir)] == [(2, 0), (4, 1)]
    with Image.open(run_dir / "samples" / "final.png") as grid:
        assert grid.mode == "RGB" and grid.size == (4 * 34 + 2, 4 * 34 + 2)  # 16 RGB 32px images
    state = ckpt.load(run_dir)
    G = Generator(channels=3, image_size=32, width=8)
    G.load_state_dict(state["G"], strict=True)


def test_every_config_field_has_a_kebab_case_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        if field.name not in ("extra", "class_names"):  # class_names: read from the data, not an option
            assert "--" + field.name.replace("_", "-") in text, field.name


# --------------------------------------------------------------------------- sample


def test_sample_grid_png(builtin_run, tmp_path, capsys):
    run_dir = builtin_run[0]
    out = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "-n", "16", "-o", str(out), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 16 images to {out}"
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.size == (4 * 30 + 2, 4 * 30 + 2)


def test_sample_npz_folder_and_seed(builtin_run, tmp_path):
    run_dir = builtin_run[0]
    checkpoint = str(run_dir / "checkpoints" / "latest.pt")  # a file works as well as the run dir
    args = ["-n", "16", "--device", "cpu"]
    assert main(["sample", checkpoint, *args, "-o", str(tmp_path / "a.npz")]) == 0
    with np.load(tmp_path / "a.npz") as f:
        images = f["images"]
    assert images.shape == (16, 28, 28, 1) and images.dtype == np.uint8
    assert 0 < images.std()  # not a blank image

    # the same seed gives the same images in every format; another seed gives others
    assert main(["sample", str(run_dir), *args, "-o", str(tmp_path / "b.npz")]) == 0
    with np.load(tmp_path / "b.npz") as f:
        assert np.array_equal(f["images"], images)
    assert main(["sample", str(run_dir), *args, "-o", str(tmp_path / "pngs")]) == 0
    files = sorted((tmp_path / "pngs").iterdir())
    assert [p.name for p in files] == [f"{i:06d}.png" for i in range(16)]
    for i, path in enumerate(files):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (28, 28)
            assert np.array_equal(np.asarray(image), images[i, :, :, 0])
    assert main(["sample", str(run_dir), *args, "--seed", "1", "-o", str(tmp_path / "c.npz")]) == 0
    with np.load(tmp_path / "c.npz") as f:
        assert not np.array_equal(f["images"], images)


def test_sample_rgb_npz_from_the_folder_run(folder_run, tmp_path):
    out = tmp_path / "rgb.npz"
    assert main(["sample", str(folder_run[0]), "-n", "5", "-o", str(out), "--device", "cpu"]) == 0
    with np.load(out) as f:
        assert f["images"].shape == (5, 32, 32, 3) and f["images"].dtype == np.uint8


def test_sample_ema_and_raw_generator_differ(builtin_run, tmp_path):
    run_dir = str(builtin_run[0])
    for name, extra in (("ema", []), ("raw", ["--no-ema"])):
        assert main(["sample", run_dir, "-n", "8", "-o", str(tmp_path / f"{name}.npz"), *extra]) == 0
    with np.load(tmp_path / "ema.npz") as a, np.load(tmp_path / "raw.npz") as b:
        assert a["images"].shape == b["images"].shape == (8, 28, 28, 1)
        assert not np.array_equal(a["images"], b["images"])


# --------------------------------------------------------------------------- user errors


def assert_one_line_error(capsys, code: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err + captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--image-size", "48"], ["unsupported image size 48", "28, 32, 64, 128"]),
        (["--channels", "2"], ["unsupported channel count 2"]),
        (["--batch-size", "0"], ["--batch-size must be at least 1, got 0"]),
        (["--lr-g", "-1"], ["--lr-g must be a positive number, got -1.0"]),
        (["--lr-d", "nan"], ["argument --lr-d: must be a finite number"]),
        (["--beta1", "1.5"], ["--beta1 must be in [0, 1)"]),
        (["--steps", "0"], ["at least 1"]),
        (["--data", "imagenet"], ["unknown dataset 'imagenet'", "mnist-5k"]),
        (["--precision", "fp64"], ["unknown precision 'fp64'"]),
        (["--compile-mode", "fast"], ["--compile-mode must be one of default, reduce-overhead", "got 'fast'"]),
        (["--device", "tpu"], ["tpu"]),
        (["--batch-size", "abc"], ["invalid int value: 'abc'"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
        (["--max-images", "8", "--batch-size", "16"], ["batch size 16 is larger than the dataset (8 images)"]),
    ],
)
def test_bad_train_options(options, fragments, tiny_train, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", *tiny_train, *options, "--run-dir", str(run_dir)])
    assert_one_line_error(capsys, code, *fragments)
    assert not run_dir.exists(), "a rejected run must not leave a run directory behind"


def test_missing_data_root(tiny_train, tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = main(
        [
            "train",
            *tiny_train,
            "--data",
            "folder",
            "--data-root",
            str(missing),
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    assert_one_line_error(capsys, code, "data root not found", str(missing))


def test_folder_without_data_root(tiny_train, tmp_path, capsys):
    code = main(["train", *tiny_train, "--data", "folder", "--run-dir", str(tmp_path / "run")])
    assert_one_line_error(capsys, code, "--data-root")


def test_empty_image_folder(tiny_train, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "nested").mkdir(parents=True)
    (empty / "nested" / "notes.txt").write_text("no images")
    code = main(
        [
            "train",
            *tiny_train,
            "--data",
            "folder",
            "--data-root",
            str(empty),
            "--channels",
            "3",
            "--image-size",
            "32",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    assert_one_line_error(capsys, code, f"no images in {empty}")


def test_existing_run_dir_without_resume(builtin_run, tiny_train, capsys):
    run_dir = builtin_run[0]
    before = (run_dir / "checkpoints" / "latest.pt").read_bytes()
    code = main(["train", *tiny_train, "--run-dir", str(run_dir)])
    assert_one_line_error(capsys, code, f"run directory {run_dir} already exists", "--resume")
    assert (run_dir / "checkpoints" / "latest.pt").read_bytes() == before  # untouched


@pytest.mark.parametrize(
    ("target", "fragments"),
    [
        ("missing.pt", ["checkpoint not found"]),
        ("empty-dir", ["no checkpoint in"]),
        ("garbage.pt", ["is not a readable checkpoint"]),
        ("foreign.pt", ["is not a dcgan checkpoint"]),
    ],
)
def test_sample_without_a_usable_checkpoint(target, fragments, tmp_path, capsys):
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    code = main(["sample", str(tmp_path / target), "-o", str(tmp_path / "out.png")])
    assert_one_line_error(capsys, code, *fragments)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["-n", "0"], ["--num-images must be at least 1, got 0"]),
        (["-o", "samples.jpg"], ["cannot tell the format"]),
        (["--format", "gif"], ["invalid choice: 'gif'"]),
    ],
)
def test_bad_sample_options(options, fragments, builtin_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["sample", str(builtin_run[0]), *options])
    assert_one_line_error(capsys, code, *fragments)


@pytest.mark.parametrize(
    ("out", "fmt", "written"), [("foo", "npz", "foo.npz"), ("bar", "grid", "bar.png"), ("baz.npz", None, "baz.npz")]
)
def test_the_path_printed_is_the_path_written(builtin_run, tmp_path, capsys, out, fmt, written):
    options = ["--format", fmt] if fmt else []
    assert main(["sample", str(builtin_run[0]), "-n", "4", "-o", str(tmp_path / out), *options]) == 0
    assert capsys.readouterr().out.strip() == f"wrote 4 images to {tmp_path / written}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [written]


def test_no_command(capsys):
    assert_one_line_error(capsys, main([]), "required")


# --------------------------------------------------------------------------- as a program


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dcgan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_python_dash_m(tmp_path):
    shown = run_module("--help", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stderr == ""
    assert "train" in shown.stdout and "sample" in shown.stdout

    bad = run_module("train", "--batch-size", "0", "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr + bad.stdout
    assert bad.stderr.splitlines() == ["error: --batch-size must be at least 1, got 0"]
    assert list(tmp_path.iterdir()) == []  # nothing created, not even runs/
