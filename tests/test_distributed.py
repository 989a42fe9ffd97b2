"""DistributedDataParallel on two CPU processes with Gloo, as torchrun would launch them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dcgan.config import TrainConfig
from dcgan.train import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(run_dir: Path, **overrides) -> TrainConfig:
    values = dict(
        g_width=8,
        d_width=8,
        batch_size=8,
        max_images=64,
        steps=4,
        device="cpu",
        quiet=True,
        log_every_steps=2,
        sample_every_steps=1000,
        checkpoint_every_steps=1000,
        run_dir=str(run_dir),
        ema_decay=0.0,
        precision="fp32",
        r1_gamma=0.0,  # the equalities below are fp32 arithmetic without R1
    )
    return TrainConfig(**{**values, **overrides})


def _rank_main(
    rank: int, world_size: int, port: int, out: str, cfg: TrainConfig, resume: str | None, explicit: set
) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    try:
        trainer = Trainer(cfg, resume=resume, explicit=explicit)
        trainer.run()
        # parameters only: batch-norm running statistics are per rank between DDP's broadcasts
        # of rank 0's buffers (at each forward), and rank 0's are the ones checkpointed
        params = {net: {k: v.detach() for k, v in getattr(trainer, net).named_parameters()} for net in ("G", "D")}
        torch.save(params, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_ranks(
    tmp_path: Path, cfg: TrainConfig, world_size: int = 2, resume: str | None = None, explicit: set = frozenset()
) -> list[dict]:
    args = (world_size, _free_port(), str(tmp_path), cfg, resume, set(explicit))
    mp.spawn(_rank_main, args=args, nprocs=world_size, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_ranks_hold_identical_parameters(tmp_path):
    rank0, rank1 = _run_ranks(tmp_path, _config(tmp_path / "run"))
    for net in ("G", "D"):
        for name in rank0[net]:
            assert torch.equal(rank0[net][name], rank1[net][name]), f"{net}.{name} differs between ranks"
    # only rank 0 wrote the run directory, and its checkpoint loads in a single process
    run = tmp_path / "run"
    assert (run / "checkpoints" / "latest.pt").is_file() and (run / "metrics.jsonl").is_file()
    single = Trainer(TrainConfig(steps=6, device="cpu"), resume=str(run), explicit={"steps"})
    assert single.step == 4
    assert torch.equal(single.G.state_dict()["main.0.weight"], rank0["G"]["main.0.weight"])


@pytest.mark.parametrize("conditional", [False, True])
def test_sync_bn_matches_single_process_with_the_global_batch(tmp_path, conditional):
    """2 ranks x batch 8 with SyncBatchNorm compute what 1 process x batch 16 computes (a conditional run
    too: each rank's real labels come with its shard, and G's labels are sliced like z)."""
    distributed = _run_ranks(
        tmp_path / "ddp", _config(tmp_path / "ddp" / "run", sync_bn=True, conditional=conditional)
    )[0]
    single = Trainer(_config(tmp_path / "single", batch_size=16, conditional=conditional))
    single.run()
    for net in ("G", "D"):
        diff = _max_diff(distributed[net], dict(getattr(single, net).named_parameters()))
        assert diff < 1e-4, f"{net} differs by {diff}"


def test_single_process_run_resumes_on_two_ranks(tmp_path):
    """Stop a 1-process run (batch 16) and resume it on 2 ranks (batch 8 each, synchronised batch norm):
    the same global batches, the same noise, so the same result as 1 process straight through."""
    first = _config(tmp_path / "run", batch_size=16, steps=2, checkpoint_every_steps=1)
    Trainer(first).run()
    resumed = _config(tmp_path / "run", batch_size=8, sync_bn=True)
    ranks = _run_ranks(tmp_path, resumed, resume=str(tmp_path / "run"), explicit={"batch_size", "steps", "sync_bn"})
    straight = Trainer(_config(tmp_path / "straight", batch_size=16))
    straight.run()
    for net in ("G", "D"):
        diff = _max_diff(ranks[0][net], dict(getattr(straight, net).named_parameters()))
        assert diff < 1e-4, f"{net} differs by {diff}"


def test_without_sync_bn_ranks_normalise_locally(tmp_path):
    """Documented difference: without SyncBatchNorm each rank's batch norm sees only its own batch."""
    distributed = _run_ranks(tmp_path / "ddp", _config(tmp_path / "ddp" / "run"))[0]
    single = Trainer(_config(tmp_path / "single", batch_size=16))
    single.run()
    assert _max_diff(distributed["G"], dict(single.G.named_parameters())) > 1e-4


def test_torchrun_launches_the_cli(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "dcgan",
        "train",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--g-width",
        "8",
        "--d-width",
        "8",
        "--batch-size",
        "8",
        "--max-images",
        "64",
        "--quiet",
        "--log-every-steps",
        "1",
        "--run-dir",
        str(run),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = (run / "config.json").read_text()
    assert '"world_size": 2' in config
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # rank 0 alone writes


def test_eval_shards_generation_across_ranks(tmp_path):
    """torchrun -m dcgan eval: the ranks generate disjoint slices and rank 0 scores exactly
    the images one process would."""
    import json

    from dcgan.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--device",
                "cpu",
                "--steps",
                "2",
                "--g-width",
                "8",
                "--d-width",
                "8",
                "--batch-size",
                "8",
                "--max-images",
                "64",
                "--quiet",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    args = [
        "eval",
        str(run),
        "--num-images",
        "120",
        "--batch-size",
        "50",
        "--json",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "dcgan", *args], capture_output=True, text=True, env=env, timeout=240
    )
    assert single.returncode == 0, single.stderr[-2000:]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        "-m",
        "dcgan",
        *args,
    ]
    ranks = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    one, two = json.loads(single.stdout), json.loads(ranks.stdout)  # rank 0 alone prints
    assert two["num_images"] == one["num_images"] == 120
    for key in ("fid", "kid_mean", "is_mean", "min_class_share"):
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key
