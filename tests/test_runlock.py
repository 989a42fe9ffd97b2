"""One writer per run directory, with real processes: a second trainer is refused while the first is
alive, and after ``kill -9`` the lock is free and the run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcgan.errors import UserError
from dcgan.runlock import RunLock, is_locked

pytest.importorskip("fcntl", reason="runs are locked with fcntl.flock, which Windows lacks")

SRC = str(Path(__file__).resolve().parents[1] / "src")
# a trainer that runs until it is stopped: fake data, checkpoints every 2 steps
LONG = [
    "--data",
    "fake",
    "--g-width",
    "8",
    "--d-width",
    "8",
    "--batch-size",
    "16",
    "--max-images",
    "64",
    "--steps",
    "1000000",
    "--log-every-steps",
    "2",
    "--sample-every-steps",
    "1000",
    "--checkpoint-every-steps",
    "2",
    "--num-samples",
    "16",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--quiet",
]


def _dcgan(*argv: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dcgan", *argv]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(condition, proc, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the trainer ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail("the trainer did not get that far in time")
        time.sleep(0.2)


def test_the_lock_is_exclusive_and_released(tmp_path):
    first = RunLock(tmp_path).acquire()
    assert is_locked(tmp_path)
    with pytest.raises(UserError, match="is in use by another dcgan train"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not is_locked(tmp_path)
    RunLock(tmp_path).acquire().release()


@pytest.mark.slow
def test_a_second_trainer_is_refused_while_the_first_lives_and_kill_9_frees_the_run(tmp_path):
    run = tmp_path / "run"
    proc = _dcgan("train", *LONG, "--run-dir", str(run), wait=False)
    try:
        _wait_for(lambda: (run / "checkpoints" / "latest.pt").is_file(), proc)
        assert is_locked(run)

        again = _dcgan("train", "--resume", str(run), "--steps", "2000000")
        assert again.returncode == 2, again.stderr
        assert again.stderr.strip().splitlines() == [
            f"error: run directory {run} is in use by another dcgan train; wait for it to finish or stop it first"
        ]

        same_dir = _dcgan("train", *LONG, "--run-dir", str(run))
        assert same_dir.returncode == 2 and len(same_dir.stderr.strip().splitlines()) == 1, same_dir.stderr
        assert "already exists" in same_dir.stderr or "in use" in same_dir.stderr
    finally:
        proc.send_signal(signal.SIGKILL)  # kill -9: no handler runs, no cleanup
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not is_locked(run), "the kernel dropped the lock with the process"
    step = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"]
    resumed = _dcgan("train", "--resume", str(run), "--steps", str(step + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(run / "checkpoints" / "latest.pt", weights_only=True)["step"] == step + 2


@pytest.mark.slow
def test_two_trainers_started_together_on_one_new_run_directory(tmp_path):
    """Both pass the up-front check (the folder is not there yet); the lock lets exactly one write."""
    run = tmp_path / "run"
    short = [*LONG[: LONG.index("--steps")], "--steps", "6", *LONG[LONG.index("--steps") + 2 :]]
    procs = [_dcgan("train", *short, "--run-dir", str(run), wait=False) for _ in range(2)]
    results = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        results.append((proc.returncode, err))
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert len(refused.strip().splitlines()) == 1 and "Traceback" not in refused, refused
    assert "in use by another dcgan train" in refused or "already exists" in refused, refused
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6], "the metrics of one run, not two interleaved"
