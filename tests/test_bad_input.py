"""Every user mistake: one line on stderr, a non-zero exit, no traceback, nothing lost.

Each case runs the CLI in-process beside a trained run directory and checks four things:
the exit code, that stderr is exactly one line, that no traceback appears, and that every
file of the pre-existing run is byte-identical afterwards. docs/bad-input.md lists the same
cases; ``DCGAN_BAD_INPUT_TABLE=docs/bad-input.md python -m pytest tests/test_bad_input.py``
rewrites it from the messages the cases print.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dcgan.cli import main

DOCS_TABLE = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # {run}: the trained run, {tmp}: an empty folder, {file}: a plain file
    expect: str  # a fragment of the one-line message
    setup: Callable[[Path, pytest.MonkeyPatch], None] | None = None
    code: int = 2


def _mkdir(*parts: str):
    def setup(tmp: Path, monkeypatch) -> None:
        tmp.joinpath(*parts).mkdir(parents=True)

    return setup


def _write(name: str, content: bytes):
    def setup(tmp: Path, monkeypatch) -> None:
        (tmp / name).write_bytes(content)

    return setup


def _foreign_checkpoint(tmp: Path, monkeypatch) -> None:
    torch.save({"state_dict": {}}, tmp / "foreign.pt")


def _edited_checkpoint(tmp: Path, monkeypatch) -> None:
    """A checkpoint whose weights no longer fit its own config (hand-edited, or another program's)."""
    state = torch.load(tmp / "run" / "checkpoints" / "latest.pt", weights_only=True)
    state["config"]["g_width"] = 16
    torch.save(state, tmp / "edited.pt")


def _bomb_folder(tmp: Path, monkeypatch) -> None:
    """A folder whose only image trips Pillow's decompression-bomb guard."""
    from PIL import Image

    (tmp / "bombs").mkdir()
    Image.new("L", (64, 64)).save(tmp / "bombs" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 > 2 x 100: an error, not a warning


def _disk_full(match: Callable[[str], bool], code: int = errno.ENOSPC):
    """Writes to paths that ``match`` fail as on a full disk (or, with ``code``, a read-only one)."""

    def setup(tmp: Path, monkeypatch) -> None:
        real_open = open

        def full_open(file, mode="r", *args, **kwargs):
            if any(m in mode for m in "wax") and match(str(file)):
                raise OSError(code, os.strerror(code), str(file))
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr("builtins.open", full_open)

    return setup


def _raising(target: str, error: Exception, match: Callable[[str], bool] = lambda p: True):
    """``target`` (a dotted name) raises ``error`` when its first argument matches: what a library that
    writes through its own C code (torch.save, torch.jit.save) raises on a full disk."""

    def setup(tmp: Path, monkeypatch) -> None:
        module, name = target.rsplit(".", 1)
        import importlib

        real = getattr(importlib.import_module(module), name)

        def fake(*args, **kwargs):
            if match(str(args[1] if len(args) > 1 else kwargs.get("f", ""))):  # save(obj, f): the file
                raise error
            return real(*args, **kwargs)

        monkeypatch.setattr(target, fake)

    return setup


TORCH_DISK_FULL = RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")
_held_locks: list[int] = []


def _live_run(tmp: Path, monkeypatch) -> None:
    """Another process holds the run's lock (flock conflicts between two open files in one process too)."""
    import fcntl

    fd = os.open(tmp / "run" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held_locks.append(fd)


def _checkpoint_outside_a_run(tmp: Path, monkeypatch) -> None:
    (tmp / "models").mkdir()
    shutil.copyfile(tmp / "run" / "checkpoints" / "latest.pt", tmp / "models" / "model.pt")
    (tmp / "models" / "config.json").write_text('{"mine": true}\n')


def _future_latest(tmp: Path, monkeypatch) -> None:
    torch.save({"format": "dcgan-checkpoint", "version": 2}, tmp / "run" / "checkpoints" / "latest.pt")


def _no_config_checkpoint(tmp: Path, monkeypatch) -> None:
    state = torch.load(tmp / "run" / "checkpoints" / "latest.pt", weights_only=True)
    del state["config"]
    torch.save(state, tmp / "noconf.pt")


def _npz(name: str, array_shape: tuple, **extra):
    def setup(tmp: Path, monkeypatch) -> None:
        import numpy as np

        np.savez(tmp / name, images=np.random.default_rng(0).integers(0, 255, array_shape, dtype=np.uint8), **extra)

    return setup


def _stats_npz(tmp: Path, monkeypatch) -> None:
    import numpy as np

    np.savez(tmp / "nan.npz", mu=np.full(4, np.nan), sigma=np.eye(4))


def _image_folder(*shapes: tuple[str, int, int]):
    """A folder of PNGs of these (mode, width, height)."""

    def setup(tmp: Path, monkeypatch) -> None:
        from PIL import Image

        (tmp / "imgs").mkdir()
        for i, (mode, w, h) in enumerate(shapes):
            Image.new(mode, (w, h)).save(tmp / "imgs" / f"{i}.png")

    return setup


def _corrupt_grid(tmp: Path, monkeypatch) -> None:
    (tmp / "run" / "samples" / "step_0000001.png").write_bytes(b"not a png")


def _little_memory(tmp: Path, monkeypatch) -> None:
    monkeypatch.setattr("dcgan.outputs.available_memory_bytes", lambda: 1 << 20)


def _file(name: str, content: bytes = b"x"):
    def setup(tmp: Path, monkeypatch) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return setup


def _no_progress_bars(monkeypatch) -> None:
    """dcgan stats draws a progress bar on stderr (by design) before the error this case is about."""
    import tqdm

    real_init = tqdm.tqdm.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "disable": True})

    monkeypatch.setattr(tqdm.tqdm, "__init__", init)


def _checkpoint_copy(tmp: Path, monkeypatch) -> None:
    shutil.copyfile(tmp / "run" / "checkpoints" / "latest.pt", tmp / "c.pt")


def _lmdb_error(tmp: Path, monkeypatch) -> None:
    import torchvision

    error = type("Error", (Exception,), {"__module__": "lmdb"})  # what the lmdb package raises

    def lsun(*args, **kwargs):
        raise error(f"{tmp}/bedroom_train_lmdb: No such file or directory")

    monkeypatch.setattr(torchvision.datasets, "LSUN", lsun)


TINY = (
    "--g-width 8 --d-width 8 --batch-size 16 --max-images 64 --steps 4 --log-every-steps 2 "
    "--sample-every-steps 2 --checkpoint-every-steps 2 --num-samples 16 --device cpu --num-workers 0 --quiet"
)
NEW = f"--run-dir {{tmp}}/new {TINY}"

CASES = [
    # options
    Case("no-command", "", "the following arguments are required: command"),
    Case("unknown-option", f"train --bogus {NEW}", "unrecognized arguments: --bogus"),
    Case("option-not-a-number", f"train {NEW} --batch-size many", "argument --batch-size: invalid int value"),
    Case("unsupported-image-size", f"train {NEW} --image-size 30", "unsupported image size 30"),
    Case("unsupported-channels", f"train {NEW} --channels 2", "unsupported channel count 2"),
    Case("batch-size-zero", f"train {NEW} --batch-size 0", "--batch-size must be at least 1"),
    Case("negative-learning-rate", f"train {NEW} --lr-g -1", "--lr-g must be a positive number"),
    Case("ema-decay-out-of-range", f"train {NEW} --ema-decay 1.5", "--ema-decay must be in [0, 1)"),
    Case("unknown-compile-mode", f"train {NEW} --compile-mode fastest", "--compile-mode must be one of"),
    Case("unknown-device", f"train {NEW} --device tpu", "unknown device 'tpu'"),
    Case("unknown-precision", f"train {NEW} --precision fp8", "unknown precision 'fp8'"),
    Case("unknown-recipe", f"train {NEW} --recipe best", "unknown recipe 'best'"),
    Case("recipe-on-resume", "train --resume {run} --recipe paper", "--recipe starts a new run"),
    Case("unknown-lr-schedule", f"train {NEW} --lr-schedule step", "--lr-schedule must be one of"),
    Case("unknown-augment-policy", f"train {NEW} --augment color,bogus", "unknown policy 'bogus'"),
    Case("minutes-not-positive", f"train {NEW} --minutes 0", "--minutes must be a positive number"),
    Case(
        "resume-budget-spent",
        "train --resume {tmp}/timed",
        "has used its 0.01-minute budget",
        lambda tmp, mp: main(
            ["train", *TINY.replace("--steps 4", "--minutes 0.01").split(), "--run-dir", str(tmp / "timed")]
        ),
    ),
    # data
    Case("unknown-dataset", f"train {NEW} --data imagenet", "unknown dataset 'imagenet'"),
    Case("data-root-typo-no-download", f"train {NEW} --data mnist --data-root {{tmp}}/typo", "data root not found"),
    Case(
        "data-root-without-files",
        f"train {NEW} --data mnist --data-root {{tmp}}/empty",
        "no usable copy under",
        _mkdir("empty"),
    ),
    Case("data-root-is-a-file", f"train {NEW} --data mnist --data-root {{file}}", "is a file"),
    Case("folder-without-data-root", f"train {NEW} --data folder", "--data folder needs --data-root"),
    Case("empty-image-folder", f"train {NEW} --data folder --data-root {{tmp}}/empty", "no images in", _mkdir("empty")),
    Case(
        "only-unreadable-images",
        f"train {NEW} --data folder --data-root {{tmp}}/broken",
        "could be read",
        lambda tmp, mp: (_mkdir("broken")(tmp, mp), _write("broken/a.png", b"nope")(tmp, mp)),
    ),
    Case(
        "decompression-bomb-only", f"train {NEW} --data folder --data-root {{tmp}}/bombs", "could be read", _bomb_folder
    ),
    Case(
        "lsun-files-missing",
        f"train {NEW} --data lsun --data-root {{tmp}}",
        "lsun: cannot open the lmdb data",
        _lmdb_error,
    ),
    Case("data-root-for-builtin-digits", f"train {NEW} --data-root {{tmp}}", "does not apply to the built-in"),
    Case("batch-larger-than-dataset", f"train {NEW} --max-images 8", "larger than the dataset"),
    # run directories and resuming
    Case("run-dir-exists", f"train {TINY} --run-dir {{run}}", "already exists; resume it with --resume"),
    Case("run-dir-is-a-file", f"train {TINY} --run-dir {{file}}", "is a file; give a folder path"),
    Case("run-dir-inside-a-file", f"train {TINY} --run-dir {{file}}/run", "is a file, not a folder"),
    Case("resume-missing", "train --resume {tmp}/nothing", "checkpoint not found"),
    Case("resume-folder-without-checkpoint", "train --resume {tmp}", "no checkpoint in"),
    Case("resume-corrupt", "train --resume {tmp}/bad.pt", "not a readable checkpoint", _write("bad.pt", b"junk")),
    Case(
        "resume-truncated",
        "train --resume {tmp}/cut.pt",
        "not a readable checkpoint",
        lambda tmp, mp: (tmp / "cut.pt").write_bytes((tmp / "run/checkpoints/latest.pt").read_bytes()[:2000]),
    ),
    Case("resume-foreign-file", "train --resume {tmp}/foreign.pt", "is not a dcgan checkpoint", _foreign_checkpoint),
    Case("resume-incompatible-option", "train --resume {run} --image-size 32", "was trained with image_size=28"),
    Case(
        "resume-weights-do-not-fit",
        "train --resume {tmp}/edited.pt --run-dir {tmp}/new",
        "checkpoint does not fit this configuration",
        _edited_checkpoint,
    ),
    Case("resume-nothing-left", "train --resume {run} --steps 4", "is already at step 4"),
    Case(
        "resume-older-checkpoint-in-place",
        "train --resume {run}/checkpoints/step_0000002.pt --steps 6",
        "resuming in place would overwrite the newer state",
    ),
    Case(
        "resume-into-another-run",
        "train --resume {run} --steps 6 --run-dir {tmp}/other",
        "already exists; resume it with --resume",
        lambda tmp, mp: (_mkdir("other")(tmp, mp), _write("other/x", b"x")(tmp, mp)),
    ),
    # fine-tuning: a new run from another run's weights
    Case("init-from-missing", f"train {NEW} --init-from {{tmp}}/nothing", "--init-from: checkpoint not found"),
    Case("init-from-not-a-checkpoint", f"train {NEW} --init-from {{file}}", "is not a readable checkpoint"),
    Case(
        "init-from-foreign-file",
        f"train {NEW} --init-from {{tmp}}/foreign.pt",
        "is not a dcgan checkpoint",
        _foreign_checkpoint,
    ),
    Case(
        "init-from-incompatible",
        f"train {NEW} --init-from {{run}} --image-size 32",
        "was trained with image_size=28, but --image-size 32 was given",
    ),
    Case("init-from-with-resume", "train --resume {run} --init-from {run}", "give one of them"),
    Case("conditional-unlabelled-data", f"train {NEW} --conditional --data fake", "fake has no class labels"),
    Case(
        "class-on-an-unconditional-run",
        "sample {run} --class 3 -o {tmp}/x.png",
        "--class applies to class-conditional runs",
    ),
    # disk errors during a run: the checkpoints written so far stay intact
    Case(
        "disk-full-metrics",
        f"train {NEW}",
        "could not write a metrics row",
        _disk_full(lambda p: p.endswith("metrics.jsonl")),
    ),
    Case(
        "disk-full-sample-grid", f"train {NEW}", "could not write a sample grid", _disk_full(lambda p: "/samples/" in p)
    ),
    Case(
        "disk-full-loss-plot", f"train {NEW}", "could not write the loss plot", _disk_full(lambda p: "losses.png" in p)
    ),
    # sample
    Case("sample-missing-checkpoint", "sample {tmp}/nothing -o {tmp}/x.png", "checkpoint not found"),
    Case("sample-zero-images", "sample {run} -n 0 -o {tmp}/x.png", "--num-images must be at least 1"),
    Case("sample-unknown-extension", "sample {run} -o {tmp}/x.jpg", "cannot tell the format"),
    Case("sample-out-inside-a-file", "sample {run} -o {file}/x.png", "is a file, not a folder"),
    Case("sample-out-is-a-folder", "sample {run} -o {tmp}/x.png", "is an existing folder", _mkdir("x.png")),
    Case("sample-out-unwritable", "sample {run} -o /proc/dcgan-samples.png", "could not write images"),
    Case("sample-folder-not-empty", "sample {run} -o {run}", "already exists and is not empty"),
    # eval, quality, bench, evaluator
    Case("eval-one-image", "eval {run} -n 1", "--num-images must be at least 2"),
    Case(
        "eval-weights-for-the-other-extractor",
        "eval {run} --extractor digits --inception-weights x.pth",
        "--inception-weights goes with --extractor inception",
    ),
    Case("quality-out-is-a-file", "quality --quick --out {file}", "is a file; give a folder path"),
    Case("quality-out-into-checkpoints", "quality --quick --out {run}/checkpoints/q", "into the checkpoints folder"),
    Case("bench-json-is-a-folder", "bench --quick --json {tmp}", "is an existing folder"),
    Case("evaluator-unlabelled-data", "evaluator train --data celeba --out {tmp}/e.pt", "invalid choice"),
    # work destroyed: no command overwrites a checkpoint, or a file of a run it does not own
    Case(
        "export-over-the-checkpoint",
        "export {run} -o {run}/checkpoints/latest.pt",
        "refusing to overwrite the checkpoint",
    ),
    Case("export-into-checkpoints", "export {run} -o {run}/checkpoints/G.pt", "into the checkpoints folder"),
    Case(
        "export-over-a-checkpoint-elsewhere",
        "export {run} -o {tmp}/c.pt",
        "refusing to overwrite the checkpoint",
        _checkpoint_copy,
    ),
    Case("export-over-run-config", "export {run} --format safetensors -o {run}/config.json", "belongs to the run"),
    Case(
        "evaluator-out-over-the-checkpoint",
        "evaluator train --out {run}/checkpoints/latest.pt",
        "refusing to overwrite the checkpoint",
    ),
    Case(
        "evaluator-out-over-a-checkpoint",
        "evaluator train --out {tmp}/c.pt",
        "refusing to overwrite the checkpoint",
        _checkpoint_copy,
    ),
    Case("nearest-over-the-loss-plot", "nearest {run} -o {run}/losses.png", "belongs to the run"),
    Case("nearest-into-checkpoints", "nearest {run} -o {run}/checkpoints/n.png", "into the checkpoints folder"),
    Case("sample-over-a-run-grid", "sample {run} -o {run}/samples/final.png", "belongs to the run"),
    Case("sample-npz-into-checkpoints", "sample {run} -o {run}/checkpoints/x.npz", "into the checkpoints folder"),
    Case("sample-seeds-over-the-loss-plot", "sample {run} --seeds 1-3 -o {run}/losses.png", "belongs to the run"),
    Case("sample-folder-into-checkpoints", "sample {run} -o {run}/checkpoints/imgs", "into the checkpoints folder"),
    Case(
        "interpolate-over-a-run-grid",
        "interpolate {run} --seeds 1,2 -o {run}/samples/step_0000002.png",
        "belongs to the run",
    ),
    Case(
        "interpolate-into-checkpoints",
        "interpolate {run} --seeds 1,2 -o {run}/checkpoints/w.gif",
        "into the checkpoints folder",
    ),
    Case("arithmetic-over-the-loss-plot", "arithmetic {run} 1+2-3 -o {run}/losses.png", "belongs to the run"),
    Case("animate-over-a-run-file", "animate {run} -o {run}/old.gif", "belongs to the run", _file("run/old.gif")),
    Case("animate-into-checkpoints", "animate {run} -o {run}/checkpoints/p.gif", "into the checkpoints folder"),
    Case(
        "stats-into-checkpoints",
        "stats {tmp}/d.npz -o {run}/checkpoints/s.npz",
        "into the checkpoints folder",
        _npz("d.npz", (8, 28, 28)),
    ),
    Case(
        "stats-over-a-checkpoint",
        "stats {tmp}/d.npz -o {tmp}/c.npz",
        "refusing to overwrite the checkpoint",
        lambda tmp, mp: (
            _npz("d.npz", (8, 28, 28))(tmp, mp),
            shutil.copyfile(tmp / "run/checkpoints/latest.pt", tmp / "c.npz"),
        ),
    ),
    Case(
        "bench-json-over-the-checkpoint",
        "bench --quick --json {run}/checkpoints/latest.pt",
        "refusing to overwrite the checkpoint",
    ),
    # one writer per run
    Case("resume-a-live-run", "train --resume {run} --steps 6", "is in use by another dcgan train", _live_run),
    Case(
        "resume-outside-a-run",
        "train --resume {tmp}/models/model.pt --steps 6",
        "is not inside a run's checkpoints/ folder",
        _checkpoint_outside_a_run,
    ),
    Case(
        "resume-older-beside-unreadable-latest",
        "train --resume {run}/checkpoints/step_0000002.pt --steps 6",
        "resuming step_0000002.pt in place could overwrite it",
        _future_latest,
    ),
    Case(
        "resume-checkpoint-without-config",
        "train --resume {tmp}/noconf.pt --run-dir {tmp}/new",
        "without its config",
        _no_config_checkpoint,
    ),
    # silently wrong results
    Case(
        "export-onnx-named-safetensors",
        "export {run} --format onnx -o {tmp}/G.safetensors",
        "has a .safetensors name, which is safetensors, but --format onnx",
    ),
    Case(
        "export-torchscript-named-onnx",
        "export {run} --format torchscript -o {tmp}/G.onnx",
        "has a .onnx name, which is onnx",
    ),
    Case(
        "export-safetensors-named-pt",
        "export {run} --format safetensors -o {tmp}/G.pt",
        "has a .pt name, which is torchscript",
    ),
    Case(
        "eval-image-set-of-1x1-images",
        "eval {tmp}/tiny.npz --data mnist-5k",
        "holds 1x1 images",
        _npz("tiny.npz", (8, 1, 1)),
    ),
    Case(
        "eval-image-set-not-square",
        "eval {tmp}/wide.npz --data mnist-5k",
        "holds 32x28 images",
        _npz("wide.npz", (8, 28, 32)),
    ),
    Case(
        "eval-image-folder-mixed-sizes",
        "eval {tmp}/imgs --data mnist-5k",
        "mixes image shapes",
        _image_folder(("L", 28, 28), ("L", 32, 32)),
    ),
    Case(
        "eval-image-folder-mixed-channels",
        "eval {tmp}/imgs --data mnist-5k",
        "mixes image shapes",
        _image_folder(("L", 28, 28), ("RGB", 28, 28)),
    ),
    Case("eval-ref-not-finite", "eval {run} --ref {tmp}/nan.npz -n 4", "holds NaN or infinite statistics", _stats_npz),
    Case("eval-k-above-the-images", "eval {run} -n 4 --k 10", "--k 10 needs more than 10 generated images"),
    Case("eval-k-equal-to-the-images", "eval {run} -n 4 --k 4", "--k 4 needs more than 4 generated images"),
    Case("eval-k-negative", "eval {run} --k -1", "--k must be 0 (no precision and recall) or more"),
    Case("eval-k-huge", "eval {run} --k 100000", "argument --k: must be at most 1,000"),
    Case(
        "interpolate-distance-nan",
        "interpolate {run} --seeds 1 --direction 2 --distance nan -o {tmp}/w.png",
        "argument --distance: must be a finite number",
    ),
    Case(
        "interpolate-distance-inf",
        "interpolate {run} --seeds 1 --direction 2 --distance inf -o {tmp}/w.png",
        "argument --distance: must be a finite number",
    ),
    # memory runaways: refused before any work
    Case(
        "sample-a-billion-images",
        "sample {run} -n 1000000000 -o {tmp}/x.png",
        "argument -n/--num-images: must be at most 1,000,000",
    ),
    Case("sample-a-billion-seeds", "sample {run} --seeds 0-999999999 -o {tmp}/x.png", "names more than 100,000 seeds"),
    Case(
        "sample-grid-beyond-memory", "sample {run} -n 5000 -o {tmp}/x.png", "more than the 1 MiB free", _little_memory
    ),
    Case(
        "sample-seeds-beyond-memory",
        "sample {run} --seeds 0-4999 -o {tmp}/x.npz",
        "more than the 1 MiB free",
        _little_memory,
    ),
    Case(
        "interpolate-beyond-memory",
        "interpolate {run} --seeds 1,2 --frames 9000 -o {tmp}/w.png",
        "more than the 1 MiB free",
        _little_memory,
    ),
    Case(
        "interpolate-huge-frames",
        "interpolate {run} --seeds 1,2 --frames 100000000 -o {tmp}/w.png",
        "argument --frames: must be at most 10,000",
    ),
    Case(
        "animate-huge-max-frames",
        "animate {run} --max-frames 1000000000 -o {tmp}/p.gif",
        "argument --max-frames: must be at most 10,000",
    ),
    Case("train-huge-latent-dim", f"train {NEW} --latent-dim 1000000000", "argument --latent-dim: must be at most"),
    Case("train-huge-g-width", f"train {NEW} --g-width 1000000000", "argument --g-width: must be at most"),
    Case("train-huge-d-width", f"train {NEW} --d-width 99999999", "argument --d-width: must be at most"),
    Case("train-huge-batch-size", f"train {NEW} --batch-size 1000000000", "argument --batch-size: must be at most"),
    Case("train-huge-num-samples", f"train {NEW} --num-samples 100000000", "argument --num-samples: must be at most"),
    Case("nearest-huge-k", "nearest {run} -k 100000", "argument -k: must be at most 100"),
    Case("nearest-huge-num-images", "nearest {run} -n 100000000", "argument -n/--num-images: must be at most"),
    Case(
        "stats-huge-image-size",
        "stats mnist-5k -o {tmp}/s.npz --image-size 100000",
        "argument --image-size: must be at most 1,024",
    ),
    # seeds are in [0, 2**64)
    Case(
        "sample-seed-beyond-64-bits",
        "sample {run} --seed 18446744073709551616 -o {tmp}/x.png",
        "argument --seed: must be at most 18,446,744,073,709,551,615",
    ),
    Case("sample-seed-negative", "sample {run} --seed -1 -o {tmp}/x.png", "argument --seed: must be at least 0"),
    Case(
        "sample-seeds-beyond-64-bits",
        "sample {run} --seeds 18446744073709551616 -o {tmp}/x.png",
        "seeds are below 2**64",
    ),
    Case("train-seed-beyond-64-bits", f"train {NEW} --seed 18446744073709551616", "argument --seed: must be at most"),
    Case("eval-seed-beyond-64-bits", "eval {run} --seed 99999999999999999999", "argument --seed: must be at most"),
    Case(
        "interpolate-direction-beyond-64-bits",
        "interpolate {run} --seeds 1 --direction 18446744073709551616 -o {tmp}/w.png",
        "argument --direction: must be at most",
    ),
    Case(
        "interpolate-seeds-beyond-64-bits",
        "interpolate {run} --seeds 1,18446744073709551616 -o {tmp}/w.png",
        "seeds are below 2**64",
    ),
    Case(
        "arithmetic-seed-beyond-64-bits",
        "arithmetic {run} 18446744073709551616+1 -o {tmp}/a.png",
        "seeds are below 2**64",
    ),
    Case("quality-seeds-negative", "quality --quick --seeds -1", "argument --seeds: expected comma-separated"),
    Case("bench-sizes-not-numbers", "bench --quick --sizes 28,big", "argument --sizes: expected comma-separated"),
    # numbers that are not finite, or out of range
    Case(
        "interpolate-fps-nan",
        "interpolate {run} --seeds 1,2 --fps nan -o {tmp}/w.gif",
        "argument --fps: must be a finite number",
    ),
    Case(
        "interpolate-fps-zero",
        "interpolate {run} --seeds 1,2 --fps 0 -o {tmp}/w.gif",
        "argument --fps: must be at least 0.01",
    ),
    Case("animate-fps-tiny", "animate {run} --fps 1e-320 -o {tmp}/p.gif", "argument --fps: must be at least 0.01"),
    Case("animate-fps-nan", "animate {run} --fps nan -o {tmp}/p.gif", "argument --fps: must be a finite number"),
    Case("animate-fps-huge", "animate {run} --fps 1e9 -o {tmp}/p.gif", "argument --fps: must be at most 1000"),
    Case("train-minutes-nan", f"train {NEW} --minutes nan", "argument --minutes: must be a finite number"),
    Case("train-lr-inf", f"train {NEW} --lr-g inf", "argument --lr-g: must be a finite number"),
    Case("train-ema-decay-nan", f"train {NEW} --ema-decay nan", "argument --ema-decay: must be a finite number"),
    Case("train-r1-gamma-nan", f"train {NEW} --r1-gamma nan", "argument --r1-gamma: must be a finite number"),
    Case("quality-budget-nan", "quality --quick --budget-min nan", "argument --budget-min: must be a finite number"),
    Case("eval-batch-size-zero", "eval {run} --batch-size 0", "argument --batch-size: must be at least 1"),
    Case(
        "evaluator-epochs-zero", "evaluator train --epochs 0 --out {tmp}/e.pt", "argument --epochs: must be at least 1"
    ),
    Case("demo-port-out-of-range", "demo {run} --port 70000", "--port must be between 1 and 65535"),
    Case(
        "arithmetic-scale-huge",
        "arithmetic {run} 1+2 --scale 100000 -o {tmp}/a.png",
        "argument --scale: must be at most 64",
    ),
    # disk failures: one line, whatever the library raises, and nothing half-written
    Case(
        "disk-full-checkpoint",
        f"train {NEW}",
        "could not write a checkpoint to",
        _raising("torch.save", TORCH_DISK_FULL, lambda p: "/new/checkpoints/" in p),
    ),
    Case(
        "disk-full-progress-gif",
        f"train {NEW}",
        "could not write the animation",
        _disk_full(lambda p: "progress.gif" in p),
    ),
    Case(
        "disk-full-export",
        "export {run} -o {tmp}/G.pt",
        "could not write the export",
        _disk_full(lambda p: "G.pt" in p),
    ),
    Case(
        "disk-full-interpolate",
        "interpolate {run} --seeds 1,2 -o {tmp}/walk.png",
        "could not write the walk",
        _disk_full(lambda p: "walk.png" in p),
    ),
    Case(
        "disk-full-interpolate-gif",
        "interpolate {run} --seeds 1,2 -o {tmp}/walk.gif",
        "could not write the animation",
        _disk_full(lambda p: "walk.gif" in p),
    ),
    Case(
        "disk-full-arithmetic",
        "arithmetic {run} 1+2 -o {tmp}/a.png",
        "could not write the grid",
        _disk_full(lambda p: "a.png" in p),
    ),
    Case(
        "disk-full-sample-grid-file",
        "sample {run} -o {tmp}/x.png",
        "could not write images",
        _disk_full(lambda p: "x.png" in p),
    ),
    Case(
        "disk-full-sample-npz",
        "sample {run} -o {tmp}/x.npz",
        "could not write images",
        _disk_full(lambda p: "x.npz" in p),
    ),
    Case(
        "disk-full-sample-folder",
        "sample {run} -n 4 -o {tmp}/imgs",
        "could not write images",
        _disk_full(lambda p: "imgs" in p),
    ),
    Case(
        "disk-full-sample-seeds",
        "sample {run} --seeds 1-4 -o {tmp}/s.png",
        "could not write images",
        _disk_full(lambda p: "s.png" in p),
    ),
    Case(
        "disk-full-sample-seeds-folder",
        "sample {run} --seeds 1-4 -o {tmp}/seeds",
        "could not write images",
        _disk_full(lambda p: "seeds" in p),
    ),
    Case(
        "disk-full-stats",
        "stats {tmp}/d.npz -o {tmp}/s.npz",
        "could not write the statistics",
        lambda tmp, mp: (
            _npz("d.npz", (8, 28, 28))(tmp, mp),
            _disk_full(lambda p: "s.npz" in p)(tmp, mp),
            _no_progress_bars(mp),
        ),
    ),
    Case(
        "disk-full-animate",
        "animate {run} -o {tmp}/p.gif",
        "could not write the animation",
        _disk_full(lambda p: "p.gif" in p),
    ),
    Case(
        "read-only-run-animate",
        "animate {run}",
        "could not write the animation",
        _disk_full(lambda p: "progress.gif" in p, errno.EROFS),
    ),
    Case(
        "read-only-checkpoints",
        f"train {NEW}",
        "could not write a checkpoint",
        _raising("torch.save", OSError(errno.EROFS, os.strerror(errno.EROFS)), lambda p: "/checkpoints/" in p),
    ),
    # tracebacks no more
    Case(
        "animate-corrupt-grid",
        "animate {run} -o {tmp}/p.gif",
        "warning: skipping unreadable sample grid",
        _corrupt_grid,
        code=0,
    ),
    Case(
        "sample-checkpoint-without-config",
        "sample {tmp}/noconf.pt -o {tmp}/x.png",
        "without its config",
        _no_config_checkpoint,
    ),
    Case(
        "export-checkpoint-without-config",
        "export {tmp}/noconf.pt -o {tmp}/G.pt",
        "without its config",
        _no_config_checkpoint,
    ),
    Case("evaluator-out-is-a-folder", "evaluator train --out {tmp}/", "the evaluator weights are a .pt file"),
    Case("evaluator-out-not-pt", "evaluator train --out {tmp}/weights.bin", "the evaluator weights are a .pt file"),
    Case("evaluator-out-inside-a-file", "evaluator train --out {file}/e.pt", "is a file, not a folder"),
    Case(
        "sample-seeds-folder-not-empty",
        "sample {run} --seeds 1-3 -o {tmp}/full",
        "already exists and is not empty",
        _file("full/x.png"),
    ),
]

_messages: dict[str, tuple[str, int]] = {}


@pytest.fixture(scope="module")
def template_run(tmp_path_factory) -> Path:
    """A tiny trained run (4 steps, checkpoints at 2 and 4 kept) that every case sits beside."""
    run = tmp_path_factory.mktemp("template") / "run"
    assert main(["train", *TINY.split(), "--keep-every-steps", "2", "--run-dir", str(run)]) == 0
    return run


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, template_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(template_run, run)
    plain_file = tmp_path / "notes.txt"
    plain_file.write_text("not a folder\n")
    monkeypatch.chdir(tmp_path)  # anything written by default lands here, not in the repository
    if case.setup is not None:
        case.setup(tmp_path, monkeypatch)
    before = _snapshot(run)
    argv = case.argv.format(run=run, tmp=tmp_path, file=plain_file).split()
    capsys.readouterr()

    try:
        code = main(argv)
    finally:
        while _held_locks:
            os.close(_held_locks.pop())

    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == case.code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(("error: ", "dcgan") if code else "warning: ") and case.expect in lines[0], lines[0]
    assert _snapshot(run) == before, "the pre-existing run directory changed"
    shown = lines[0].replace(str(run), "RUN").replace(str(tmp_path), "TMP")
    _messages[case.id] = (shown, code)


def test_new_run_dirs_of_failed_options_are_not_created(template_run, tmp_path, monkeypatch):
    """Options are checked before anything is written: a refused run leaves no folder behind."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY.split(), "--run-dir", str(tmp_path / "new"), "--lr-g", "-1"]) == 2
    assert (
        main(
            [
                "train",
                *TINY.split(),
                "--run-dir",
                str(tmp_path / "typo"),
                "--data",
                "mnist",
                "--data-root",
                str(tmp_path / "nope"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "new").exists() and not (tmp_path / "nope").exists()


def test_the_docs_table_lists_every_case():
    text = DOCS_TABLE.read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*$", text, re.M)}
    assert set(rows) == {c.id for c in CASES}
    for case in CASES:
        assert case.expect.replace("|", "\\|") in rows[case.id], case.id
        assert rows[case.id].rstrip().endswith(f"| {case.code} |"), case.id


@pytest.fixture(scope="module", autouse=True)
def _write_docs_table():
    """With DCGAN_BAD_INPUT_TABLE set, write the table of the messages the cases printed."""
    yield
    target = os.environ.get("DCGAN_BAD_INPUT_TABLE")
    if not target or len(_messages) != len(CASES):
        return
    lines = [
        "# Bad input: one line, a non-zero exit, nothing lost",
        "",
        "Every case below is a test in `tests/test_bad_input.py`. Each runs the command beside a trained run",
        "directory (`RUN`) and checks the exit code, that stderr is exactly this one line, that no traceback",
        "appears, and that every file of `RUN` is byte-identical afterwards. `TMP` is an empty folder,",
        "`TMP/notes.txt` a plain file, and `NEW` stands for `--run-dir TMP/new` plus tiny training options.",
        "The `disk-full-*` and `read-only-*` cases make the writer's own call fail as on a full or read-only disk",
        "(an `OSError`, or the `RuntimeError` torch's zip writer raises); `tests/test_outputs.py` repeats every",
        "writer on a really full tmpfs where the tests may mount one. The exit-0 case warns in one line and goes on.",
        "Regenerate this page with `DCGAN_BAD_INPUT_TABLE=docs/bad-input.md python -m pytest tests/test_bad_input.py`.",
        "",
        "| case | command | message | exit |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        shown, code = _messages[case.id]
        command = "dcgan " + re.sub(r"\s+", " ", case.argv.replace(NEW, "NEW").replace(TINY, "TINY")).strip()
        command = command.replace("{run}", "RUN").replace("{tmp}", "TMP").replace("{file}", "TMP/notes.txt")
        lines.append(f"| `{case.id}` | `{command}` | {shown.replace('|', chr(92) + '|')} | {code} |")
    old = Path(target).read_text() if Path(target).is_file() else ""
    sections = old[old.index("\n## ") :] if "\n## " in old else ""  # the hand-written sections after the table
    Path(target).write_text("\n".join(lines) + "\n" + sections)
