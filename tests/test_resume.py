"""Exact resume and fault tolerance: stopping, crashing and bad input lose nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.config import TrainConfig
from dcgan.errors import UserError
from dcgan.train import Trainer, TrainingDiverged

TINY = [
    "--g-width",
    "8",
    "--d-width",
    "8",
    "--batch-size",
    "16",
    "--max-images",
    "160",
    "--quiet",
    "--log-every-steps",
    "2",
    "--sample-every-steps",
    "1000",
    "--checkpoint-every-steps",
    "3",
]


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("img_per_s")  # wall time: the only field allowed to differ
    return rows


def _latest(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)


def _assert_same_weights(a: dict, b: dict) -> None:
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), f"{net}.{name} differs"


# augmented: the augmentations' draws come from the global RNG, which the checkpoint must carry
@pytest.mark.parametrize(
    "options", [[], ["--augment", "color,translation,cutout", "--mirror"]], ids=["plain", "augmented"]
)
def test_resume_is_bit_identical(tmp_path, options):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--steps", "14", "--run-dir", str(straight), *TINY, *options]) == 0
    # 7 steps: stops mid-epoch (10 steps per epoch) and mid log interval
    assert main(["train", "--steps", "7", "--run-dir", str(split), *TINY, *options]) == 0
    assert _latest(split)["step"] == 7
    assert main(["train", "--resume", str(split), "--steps", "14"]) == 0
    a, b = _latest(straight), _latest(split)
    assert a["step"] == b["step"] == 14 and a["epoch"] == b["epoch"] == 1
    _assert_same_weights(a, b)
    for opt in ("opt_G", "opt_D"):
        for k, state in a[opt]["state"].items():
            assert torch.equal(state["exp_avg"], b[opt]["state"][k]["exp_avg"])
    assert _metrics(straight) == _metrics(split)


def test_resume_from_checkpoint_file_and_kept_checkpoints(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--steps", "6", "--run-dir", str(run), "--keep-every-steps", "3", *TINY]) == 0
    kept = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert kept == ["latest.pt", "step_0000003.pt", "step_0000006.pt"]
    assert not list((run / "checkpoints").glob(".*tmp"))
    # an older kept checkpoint continues from its step, into a new run directory
    older = str(run / "checkpoints" / "step_0000003.pt")
    with pytest.raises(UserError, match="at step 6; resuming in place would overwrite the newer state"):
        Trainer(TrainConfig(steps=8), resume=older, explicit={"steps"})
    branch = tmp_path / "branch"
    trainer = Trainer(TrainConfig(steps=8, run_dir=str(branch)), resume=older, explicit={"steps", "run_dir"})
    assert trainer.step == 3 and trainer.total_steps == 8


def test_checkpoint_holds_everything(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    state = _latest(run)
    expected = {
        "format",
        "version",
        "config",
        "G",
        "D",
        "G_ema",
        "opt_G",
        "opt_D",
        "scaler_G",
        "scaler_D",
        "step",
        "epoch",
        "images_in_epoch",
        "stats_sum",
        "stats_count",
        "fixed_noise",
        "rng",
        "noise_rng",
        "world_size",
    }
    assert expected <= state.keys()
    assert set(state["rng"]) == {"python", "numpy", "torch", "cuda"}
    assert state["images_in_epoch"] == 3 * 16


# --------------------------------------------------------------------------- signals and crashes

_SCRIPT = """
import os, signal, sys, time
import torch
torch.set_num_threads(1)  # the same kernels in every process: runs compare bit for bit
from dcgan.cli import main
mode, arg = sys.argv[1].partition(":")[::2]
if mode == "slow":  # slow steps so that a signal lands mid-run
    import dcgan.step as t
    step = t.train_step
    def slow(*a, **k):
        time.sleep(0.02)
        return step(*a, **k)
    t.train_step = slow
if mode in ("die-in-save", "slow-save"):
    real_save, calls = torch.save, []
    def save(obj, f, *a, **k):
        calls.append(1)
        if mode == "slow-save":
            time.sleep(1.0)
        elif len(calls) == int(arg):  # SIGKILL ourselves halfway through writing this checkpoint
            with open(f, "wb") as out:
                out.write(b"PK\\x03\\x04 half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *a, **k)
    torch.save = save
print("started", flush=True)
sys.exit(main(sys.argv[2:]))
"""


def _spawn(tmp_path: Path, mode: str, *args: str) -> subprocess.Popen:
    script = tmp_path / "run_train.py"
    script.write_text(_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), mode, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint(path: Path, proc: subprocess.Popen, timeout_s: float = 120, *, newer_than=None) -> None:
    """Until ``path`` exists (and is another file than ``newer_than``, an earlier stat of it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            now = path.stat()
            if newer_than is None or now.st_ino != newer_than.st_ino:
                return
        except FileNotFoundError:
            pass
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_exits_cleanly(tmp_path, sig, code):
    run = tmp_path / "run"
    proc = _spawn(tmp_path, "slow", "train", "--steps", "100000", "--run-dir", str(run), *TINY)
    _wait_for_checkpoint(run / "checkpoints" / "latest.pt", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "aborted" not in err
    assert f"dcgan train --resume {run}" in out
    state = ckpt.load(run)
    assert 3 <= state["step"] < 100000
    # the pictures of the stopped run: the grid of its last step, and the loss curves
    final = run / "samples" / "final.png"
    assert final.read_bytes() == (run / "samples" / f"step_{state['step']:07d}.png").read_bytes()
    assert (run / "losses.png").stat().st_size > 0
    # and it resumes from exactly there
    trainer = Trainer(TrainConfig(), resume=str(run))
    assert trainer.step == state["step"]


@pytest.mark.slow
def test_second_sigint_aborts_at_once(tmp_path):
    run = tmp_path / "run"
    proc = _spawn(tmp_path, "slow-save", "train", "--steps", "100000", "--run-dir", str(run), *TINY)
    latest = run / "checkpoints" / "latest.pt"
    _wait_for_checkpoint(latest, proc)
    before = latest.read_bytes()
    proc.send_signal(signal.SIGINT)  # honoured: finish the step, then save (which takes a second here)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # abort now, without waiting for that save
    out, err = proc.communicate(timeout=120)
    # under load this once exited 130 with an empty stderr (the graceful path?): say what it printed
    seen = f"stdout: {out[-800:]!r}\nstderr: {err[-800:]!r}"
    assert proc.returncode == 130, seen
    assert err.strip().splitlines()[-1:] == ["aborted"], seen
    assert "stopped at step" not in out  # the graceful path never finished
    assert latest.read_bytes() == before or ckpt.load(run)["step"] > 3  # the old checkpoint, or a whole new one
    assert not list((run / "checkpoints").glob(".*.tmp*"))


def _final_state(run_dir: Path) -> dict:
    state = _latest(run_dir)
    return {key: state[key] for key in ("G", "D", "G_ema", "opt_G", "opt_D", "step", "epoch", "stats_sum")}


def _assert_bit_identical(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_bit_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_bit_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, where


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_is_bit_identical_to_a_straight_run(tmp_path):
    """SIGKILL at random moments during training and in the middle of checkpoint writes; resuming
    each time must end in exactly the weights, EMA and optimizer states of an uninterrupted run."""
    import random

    steps = "40"
    options = ["--steps", steps, *TINY[:-1], "2"]  # checkpoint every 2 steps
    straight = tmp_path / "straight"
    proc = _spawn(tmp_path, "plain", "train", "--run-dir", str(straight), *options)
    assert proc.wait(timeout=300) == 0, proc.communicate()

    run, latest = tmp_path / "chaos", tmp_path / "chaos" / "checkpoints" / "latest.pt"
    rng = random.Random(1234)
    kills = ["random", "die-in-save:2", "random", "random", "die-in-save:1", "random"]
    args = ["train", "--run-dir", str(run), *options]
    steps_at_kill = []
    for kill in kills:
        if kill == "random":
            proc = _spawn(tmp_path, "slow", *args)
            seen = latest.stat() if latest.exists() else None
            _wait_for_checkpoint(latest, proc, newer_than=seen)  # this process is training
            time.sleep(rng.uniform(0.0, 0.15))
            proc.kill()
        else:
            proc = _spawn(tmp_path, kill, *args)
        proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, f"{kill}: the run ended before the kill"
        steps_at_kill.append(ckpt.load(run)["step"])  # loadable whenever the kill landed
        args = ["train", "--resume", str(run)]
    assert steps_at_kill == sorted(steps_at_kill) and steps_at_kill[-1] < int(steps)
    proc = _spawn(tmp_path, "plain", *args)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    _assert_bit_identical(_final_state(straight), _final_state(run))
    assert _metrics(straight) == _metrics(run)  # no row lost or written twice
    assert not list((run / "checkpoints").glob(".*.tmp*"))


# --------------------------------------------------------------------------- divergence


def test_non_finite_weights_stop_training_and_keep_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    good = _latest(run)
    trainer = Trainer(TrainConfig(steps=9), resume=str(run), explicit={"steps"})
    with torch.no_grad():
        next(trainer.D.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="step"):
        trainer.run()
    after = _latest(run)
    assert after["step"] == 3
    _assert_same_weights(good, after)


# --------------------------------------------------------------------------- bad input


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"PK\x03\x04truncated"])
def test_corrupt_checkpoint(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    assert "checkpoint" in _one_line_error(capsys, ["train", "--resume", str(bad)])
    assert "checkpoint" in _one_line_error(capsys, ["sample", str(bad), "-o", str(tmp_path / "x.png")])


def test_truncated_and_foreign_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    data = (run / "checkpoints" / "latest.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, ["train", "--resume", str(truncated)])
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert "not a dcgan checkpoint" in _one_line_error(capsys, ["train", "--resume", str(foreign)])


def test_checkpoint_config_mismatch(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    err = _one_line_error(capsys, ["train", "--resume", str(run), "--image-size", "32"])
    assert "image_size=28" in err
    err = _one_line_error(capsys, ["train", "--resume", str(run), "--channels", "3"])
    assert "channels=1" in err


def test_existing_run_dir_is_not_clobbered(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert "--resume" in _one_line_error(capsys, ["train", "--steps", "3", "--run-dir", str(run), *TINY])
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch, capsys):
    """A full or read-only disk when a checkpoint is written: one line, the old checkpoint survives."""
    import errno

    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    good = (run / "checkpoints" / "latest.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    err = _one_line_error(capsys, ["train", "--resume", str(run), "--steps", "6"])
    assert "No space left" in err and "previous checkpoint is intact" in err
    assert (run / "checkpoints" / "latest.pt").read_bytes() == good
    assert not list((run / "checkpoints").glob(".*tmp"))


def test_missing_data_root_and_empty_folder(tmp_path, capsys):
    assert "not found" in _one_line_error(
        capsys, ["train", "--data", "folder", "--data-root", str(tmp_path / "nope"), "--run-dir", str(tmp_path / "r1")]
    )
    (tmp_path / "empty").mkdir()
    assert "no images" in _one_line_error(
        capsys, ["train", "--data", "folder", "--data-root", str(tmp_path / "empty"), "--run-dir", str(tmp_path / "r2")]
    )
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_batch_larger_than_dataset(tmp_path, capsys):
    err = _one_line_error(
        capsys, ["train", "--max-images", "10", "--batch-size", "64", "--run-dir", str(tmp_path / "r")]
    )
    assert "batch size 64 is larger than the dataset" in err


def test_unreadable_images_are_skipped_with_a_count(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(20):
        Image.new("RGB", (40, 40), (i * 10, 0, 0)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    argv = [
        "train",
        "--data",
        "folder",
        "--data-root",
        str(folder),
        "--channels",
        "3",
        "--image-size",
        "32",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--g-width",
        "8",
        "--d-width",
        "8",
        "--quiet",
        "--run-dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    assert "skipped 1 unreadable image file" in capsys.readouterr().out


def test_unreadable_only_folder_fails(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"nope")
    err = _one_line_error(
        capsys, ["train", "--data", "folder", "--data-root", str(folder), "--run-dir", str(tmp_path / "r")]
    )
    assert "could be read" in err


def test_checkpoint_save_is_atomic_on_exception(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    ckpt.save({"x": torch.ones(3)}, path)

    def boom(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("crash mid-write")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError):
        ckpt.save({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(ckpt.load(path)["x"], torch.ones(3))
    assert os.listdir(tmp_path) == ["c.pt"]


def test_user_error_is_raised_for_a_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ckpt.load(tmp_path / "missing.pt")


def test_short_run_writes_a_partial_row_that_resume_replaces(tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--run-dir", str(run), *TINY, "--log-every-steps", "4"]
    assert main([*argv, "--steps", "3"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("partial")) for r in rows] == [(3, True)]
    assert (run / "losses.png").is_file()
    assert main(["train", "--resume", str(run), "--steps", "8"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r.get("partial")) for r in rows] == [(4, None), (8, None)]


def test_an_older_checkpoint_continues_in_a_new_run_directory(tmp_path, capsys):
    run, branch = tmp_path / "run", tmp_path / "branch"
    assert main(["train", "--steps", "6", "--run-dir", str(run), "--keep-every-steps", "3", *TINY]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    older = str(run / "checkpoints" / "step_0000003.pt")
    assert main(["train", "--resume", older, "--steps", "8", "--run-dir", str(branch)]) == 0
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # the source run is untouched
    assert _latest(branch)["step"] == 8
    steps = [row["step"] for row in _metrics(branch)]
    assert steps == [2, 4, 6, 8]  # step 2 from the source run, then the continued steps once each
    assert _metrics(branch)[0] == _metrics(run)[0]


def test_edits_to_config_json_are_reported_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--steps", "3", "--run-dir", str(run), *TINY]) == 0
    config = json.loads((run / "config.json").read_text())
    config["lr_g"] = 0.5
    (run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 0
    err = capsys.readouterr().err
    assert "config.json was edited (lr_g 0.0004 -> 0.5); resuming uses the checkpoint's values" in err
    assert _latest(run)["config"]["lr_g"] == 0.0004
    assert json.loads((run / "config.json").read_text())["lr_g"] == 0.0004  # the record is the truth again
