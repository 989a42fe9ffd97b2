"""The output guard: what may be written, atomic files and folders, disk failures, SIGTERM, content keys.

The full-disk tests run every writer on a 1 MiB tmpfs that is filled first (mounting needs root; they skip
with the reason elsewhere). The SIGTERM tests run the CLI in a child process, slowed inside its writer.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan.cli import main
from dcgan.errors import UserError
from dcgan.outputs import (
    check_output,
    check_suffix,
    is_checkpoint,
    run_dir_of,
    write_cache,
    write_failure,
    writing,
    writing_folder,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_train) -> Path:
    run = tmp_path_factory.mktemp("outputs") / "run"
    assert main(["train", *tiny_train, "--run-dir", str(run)]) == 0
    return run


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_error_line(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- what may be written


def test_a_run_directory_and_its_checkpoints_are_recognised(run, tmp_path):
    assert run_dir_of(run / "samples" / "final.png") == run
    assert run_dir_of(run) == run
    assert run_dir_of(tmp_path / "x.png") is None
    assert is_checkpoint(run / "checkpoints" / "latest.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    assert not is_checkpoint(tmp_path / "other.pt") and not is_checkpoint(run / "losses.png")


def test_the_guard_refuses_what_is_not_the_commands(run, tmp_path):
    shutil.copyfile(run / "checkpoints" / "latest.pt", tmp_path / "renamed.png")
    with pytest.raises(UserError, match="refusing to overwrite the checkpoint"):
        check_output(tmp_path / "renamed.png")  # by content, whatever its name
    with pytest.raises(UserError, match="into the checkpoints folder"):
        check_output(run / "checkpoints" / "new.pt")
    with pytest.raises(UserError, match="belongs to the run"):
        check_output(run / "losses.png")
    assert check_output(run / "samples" / "progress.gif", owned=("samples/progress.gif",))
    assert check_output(run / "a-new-picture.png")  # a new file beside the run's own is fine
    with pytest.raises(UserError, match="already exists and is not empty"):
        check_output(run / "samples", folder=True)


def test_a_suffix_of_another_format_is_refused():
    suffixes = {"onnx": (".onnx",), "safetensors": (".safetensors",), "torchscript": (".pt", ".ts")}
    with pytest.raises(UserError, match="which is safetensors, but --format onnx"):
        check_suffix("G.safetensors", "onnx", suffixes)
    check_suffix("G.onnx", "onnx", suffixes)
    check_suffix("G.bin", "onnx", suffixes)  # a name of no known format is the user's choice


# --------------------------------------------------------------------------- atomic writes


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    out = tmp_path / "x.bin"
    out.write_bytes(b"old")
    with pytest.raises(UserError, match=r"could not write the thing to .*x.bin \(No space left on device\)"):
        with writing(out, "the thing") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_a_bug_in_a_writer_keeps_its_traceback(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with writing(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            _ = 1 / 0  # a bug: not an I/O error
    assert os.listdir(tmp_path) == []


def test_a_cache_that_cannot_be_written_warns_and_carries_on(tmp_path, capsys):
    def fail(tmp):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    assert not write_cache(tmp_path / "c.pt", "the cache", fail)
    assert "warning: could not write the cache" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
    (tmp_path / "file").write_text("x")
    assert not write_cache(tmp_path / "file" / "c.pt", "the cache", lambda tmp: tmp.write_bytes(b"c"))
    assert "is a file, not a folder; carrying on without the cache" in capsys.readouterr().err


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "imgs"
    with pytest.raises(UserError, match="could not write images"):
        with writing_folder(out, "images") as tmp:
            (tmp / "0.png").write_bytes(b"one")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os.listdir(tmp_path) == []
    out.mkdir()  # an empty folder is taken over
    with writing_folder(out, "images") as tmp:
        (tmp / "0.png").write_bytes(b"one")
    assert os.listdir(out) == ["0.png"] and os.listdir(tmp_path) == ["imgs"]


def test_any_exception_type_is_a_disk_failure_when_the_disk_is_full(tmp_path, monkeypatch):
    class Full:
        f_flag, f_bavail, f_frsize = 0, 0, 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    assert write_failure(ValueError("whatever the library says"), tmp_path) == "No space left on device"
    monkeypatch.undo()
    assert write_failure(ValueError("a bug"), tmp_path) is None
    assert write_failure(OSError(errno.EROFS, os.strerror(errno.EROFS)), tmp_path) == "Read-only file system"


# --------------------------------------------------------------------------- a really full disk


def _tmpfs(mount: Path) -> None:
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a tmpfs needs root (the monkeypatched disk-full cases in test_bad_input.py still run)")


@pytest.fixture
def empty_disk(tmp_path):
    """A 1 MiB tmpfs: a run's small files fit on it, a checkpoint (1.4 MB at the tiny widths) does not."""
    mount = tmp_path / "small"
    _tmpfs(mount)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazy: a busy mount is still detached


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs with an empty folder ``out``, filled to the last byte."""
    mount = tmp_path / "full"
    _tmpfs(mount)
    try:
        (mount / "out").mkdir()
        with open(mount / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazy: a busy mount is still detached


WRITERS = {
    "export": "export {run} -o {out}/G.pt",
    "sample-grid": "sample {run} -o {out}/x.png",
    "sample-npz": "sample {run} -o {out}/x.npz",
    "sample-folder": "sample {run} -n 8 -o {out}/imgs",
    "sample-seeds": "sample {run} --seeds 0-15 -o {out}/s.png",
    "sample-seeds-npz": "sample {run} --seeds 0-15 -o {out}/s.npz",
    "sample-seeds-folder": "sample {run} --seeds 0-15 -o {out}/seeds",
    "interpolate": "interpolate {run} --seeds 1,2 -o {out}/w.png",
    "interpolate-gif": "interpolate {run} --seeds 1,2 -o {out}/w.gif",
    "arithmetic": "arithmetic {run} 1+2-3 -o {out}/a.png",
    "animate": "animate {run} -o {out}/p.gif",
    "stats": "stats {npz} -o {out}/s.npz",
    "train": "train {tiny} --run-dir {out}/new",
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_on_a_full_disk_says_so_in_one_line(
    writer, full_disk, run, tmp_path, tiny_train, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    npz = tmp_path / "d.npz"
    np.savez(npz, images=np.random.default_rng(0).integers(0, 255, (8, 28, 28), dtype=np.uint8))
    before = _snapshot(run)
    argv = WRITERS[writer].format(run=run, out=full_disk / "out", npz=npz, tiny=" ".join(tiny_train)).split()
    monkeypatch.setattr("tqdm.tqdm.__init__", _quiet_tqdm_init())  # stats draws a progress bar on stderr
    line = _one_error_line(capsys, argv)
    assert "No space left on device" in line, line
    assert os.listdir(full_disk / "out") == [], "nothing half-written, and no half-made run directory"
    assert _snapshot(run) == before


def _quiet_tqdm_init():
    import tqdm

    real_init = tqdm.tqdm.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "disable": True})

    return init


def test_the_training_checkpoint_on_a_full_disk(empty_disk, tiny_train, capsys, tmp_path, monkeypatch):
    """torch.save raises a RuntimeError when the disk fills: still one line, and no temporary file left."""
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(capsys, ["train", *tiny_train, "--run-dir", str(empty_disk / "run")])
    assert line.startswith("error: could not write a checkpoint to") and "No space left on device" in line, line
    assert not list((empty_disk / "run" / "checkpoints").glob(".*")), "the temporary checkpoint is removed"


def test_a_full_statistics_cache_warns_and_eval_carries_on(full_disk, run, capsys, monkeypatch):
    monkeypatch.setattr("tqdm.tqdm.__init__", _quiet_tqdm_init())
    capsys.readouterr()
    code = main(
        [
            "eval",
            str(run),
            "-n",
            "16",
            "--k",
            "0",
            "--extractor",
            "digits",
            "--json",
            "--cache-dir",
            str(full_disk / "out" / "stats"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [line for line in captured.err.splitlines() if line.strip()] == [
        line for line in captured.err.splitlines() if line.startswith("warning: could not write the statistics cache")
    ]
    assert '"fid"' in captured.out
    assert not list((full_disk / "out").rglob(".*tmp*"))


# --------------------------------------------------------------------------- SIGTERM


_SLOW_WRITER = """
import sys, time
sys.path.insert(0, {src!r})
import torch
from PIL import Image
real_jit_save, real_pil_save = torch.jit.save, Image.Image.save
def slow_jit_save(m, f, *a, **k):
    real_jit_save(m, f, *a, **k)
    print("writing", flush=True)
    time.sleep(60)
def slow_pil_save(self, fp, *a, **k):
    real_pil_save(self, fp, *a, **k)
    print("writing", flush=True)
    time.sleep(60)
torch.jit.save, Image.Image.save = slow_jit_save, slow_pil_save
from dcgan.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv,out",
    [
        ("export {run} -o {tmp}/G.pt", "G.pt"),
        ("sample {run} -n 8 -o {tmp}/imgs", "imgs"),
    ],
    ids=["export", "sample-folder"],
)
def test_sigterm_mid_write_leaves_nothing_behind(argv, out, run, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(_SLOW_WRITER.format(src=SRC))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), *argv.format(run=run, tmp=work).split()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        assert os.listdir(work), "the temporary file or folder is there while it is written"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["stopped by SIGTERM; nothing half-written was left"], err
    assert os.listdir(work) == [], "no temporary file or folder, and no half output"
    assert main(argv.format(run=run, tmp=work).split()) == 0  # the rerun is not refused
    assert (work / out).exists()


# --------------------------------------------------------------------------- untidy ends


def test_a_run_stopped_before_its_first_row_has_a_log_and_a_plot(tmp_path, tiny_train):
    from dcgan.config import TrainConfig
    from dcgan.train import Trainer

    cfg = TrainConfig(
        g_width=8,
        d_width=8,
        batch_size=16,
        max_images=64,
        steps=4,
        log_every_steps=100,
        device="cpu",
        num_workers=0,
        quiet=True,
        num_samples=16,
        run_dir=str(tmp_path / "run"),
    )
    trainer = Trainer(cfg)
    trainer.stop.reason = "SIGTERM"  # as if the signal came before the first step
    trainer.run()
    assert (tmp_path / "run" / "metrics.jsonl").is_file() and (tmp_path / "run" / "losses.png").is_file()
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").is_file()


# --------------------------------------------------------------------------- results that cannot be silently wrong


def test_the_real_statistics_cache_is_keyed_by_content(tmp_path, mnist5k):
    from dcgan.metrics.evaluate import real_features

    class LinearExtractor(torch.nn.Module):
        name, labels, num_features, cache_key = "stand-in", None, 8, "linear"

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(()))  # extract reads the device from the parameters

        def features_and_logits(self, images_u8):
            return images_u8.float().flatten(1).reshape(len(images_u8), 8, -1).mean(-1), None

    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"one")
    key = {"dataset": "folder", "root": str(folder), "split": "train", "image_size": 28, "channels": 1}
    first, path1 = real_features(
        mnist5k.images[:50], LinearExtractor(), key=key, cache_dir=tmp_path / "c", progress=False
    )
    time.sleep(0.01)
    (folder / "a.bin").write_bytes(b"two!")  # the images were replaced: same folder, other content
    second, path2 = real_features(
        mnist5k.images[50:100], LinearExtractor(), key=key, cache_dir=tmp_path / "c", progress=False
    )
    assert path1 != path2 and not torch.equal(first, second)


def test_16_bit_images_are_scaled_not_clipped():
    from PIL import Image

    from dcgan.data.transforms import pil_transform

    image = Image.fromarray(np.array([[0, 32896, 65535, 257]] * 4, dtype=np.uint16))
    assert image.mode.startswith("I")
    pixels = pil_transform(1, 4)(image)
    assert pixels[0, 0].tolist() == [0, 128, 255, 1]


def test_non_finite_features_are_refused():
    from dcgan.metrics.evaluate import score

    real, fake = torch.randn(10, 4), torch.randn(10, 4)
    fake[3, 1] = float("nan")

    class Extractor:
        name, labels = "stand-in", None

    with pytest.raises(UserError, match="generated images' features are not finite"):
        score(real, fake, None, Extractor())
