"""The variants ``dcgan bench`` times: the project's trainer path and the classic loop.

The project path is built by ``step.build_training``, the trainer's own set-up, with one
fast-path measure switched per ablation. Every variant runs in a fresh subprocess
(``python -m dcgan.benchmarks.variants SPEC``) unless the run is in-process.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from ..fileio import load_weights_only
from ..runtime import resolve_precision
from . import timing
from .timing import busy_cpu_s, count_flops, time_repeats

LOG_EVERY_STEPS = 50  # TrainConfig's default: the trainer reads its statistics this often


def _forever(epoch_fn):
    epoch = 0
    while True:
        yield from epoch_fn(epoch)
        epoch += 1


def _project(spec: dict, device: torch.device):
    """(train step, sample call, flop-count step) for the project's trainer path with ``spec['options']``."""
    from ..config import TrainConfig
    from ..data import Batches, ImageFolder, InMemoryImages, to_model_range
    from ..sample import generate
    from ..step import build_training

    opts = spec["options"]
    cfg = TrainConfig(
        image_size=spec["size"],
        channels=spec["channels"],
        g_width=spec["width"],
        d_width=spec["width"],
        latent_dim=spec["latent_dim"],
        batch_size=spec["batch_size"],
        seed=spec["seed"],
        precision=opts.get("precision", "auto"),
        compile=bool(opts.get("compile")),
        compile_mode=opts.get("compile") or "default",
    )
    if opts.get("channels_last") == "flip":
        cfg = dataclasses.replace(cfg, channels_last=not cfg.channels_last)
    parts = build_training(cfg, device, fast_adam=opts.get("adam") != "plain")  # the trainer's set-up
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = opts.get("cudnn_benchmark", True)
    ema = parts.ema if opts.get("ema", True) else None

    data_dir = Path(spec["data_dir"])
    if opts.get("data") == "loader":
        data = ImageFolder(str(data_dir / "images"), spec["channels"], spec["size"])
    else:
        data = InMemoryImages(load_weights_only(data_dir / "images_u8.pt", "benchmark image tensor"))
    batches = Batches(data, cfg.batch_size, seed=cfg.seed, device=device, num_workers=cfg.num_workers)
    stream = _forever(batches.epoch)
    stats_sum = torch.zeros(5, device=device)
    step = 0

    def train():
        nonlocal step, stats_sum
        real = to_model_range(next(stream)).contiguous(memory_format=parts.memory_format)
        z = torch.randn(cfg.batch_size, cfg.latent_dim, device=device, generator=parts.noise_rng)
        stats = parts.step(real, z)
        if ema is not None:
            ema.update(parts.G, step)
        step += 1
        if opts.get("sync_every_step"):
            stats.tolist()  # what reading the statistics every step costs
        else:
            stats_sum += stats
            if step % LOG_EVERY_STEPS == 0:
                stats_sum.tolist()
                stats_sum.zero_()

    G_sample = ema.model if ema is not None else copy.deepcopy(parts.G).eval()
    seed = itertools.count()

    def sample():
        generate(G_sample, cfg.batch_size, seed=next(seed), batch_size=cfg.batch_size)

    return train, sample


def _classic(spec: dict, device: torch.device):
    """(train step, sample call) for the classic loop."""
    from .classic import (
        classic_batches,
        classic_dataset,
        classic_loader,
        classic_models,
        classic_optimizers,
        classic_sample,
        classic_step,
    )

    G, D = classic_models(
        latent_dim=spec["latent_dim"], channels=spec["channels"], image_size=spec["size"], width=spec["width"]
    )
    G.to(device)
    D.to(device)
    opt_G, opt_D = classic_optimizers(G, D)
    criterion = torch.nn.BCELoss()
    dataset = classic_dataset(
        str(Path(spec["data_dir"]) / "images"), channels=spec["channels"], image_size=spec["size"]
    )
    batches = classic_batches(classic_loader(dataset, spec["batch_size"]), device)
    fixed_noise = torch.randn(spec["batch_size"], spec["latent_dim"], 1, 1, device=device)

    def train():
        real = next(batches)
        z = torch.randn(real.size(0), spec["latent_dim"], 1, 1, device=device)
        classic_step(G, D, opt_G, opt_D, real, z, criterion)

    def sample():
        classic_sample(G, fixed_noise).cpu()  # the classic moves the grid to the host to save it

    return train, sample


def run_variant(spec: dict) -> dict:
    """Time one variant in this process; ``spec`` is a plain dict so it can cross a process boundary."""
    threads, cudnn_benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    try:
        return _run_variant(spec)
    finally:  # matters only in-process
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _run_variant(spec: dict) -> dict:
    device = torch.device(spec["device"])
    torch.manual_seed(spec["seed"])
    if spec["path"] == "peak":
        fp32 = timing.measure_peak(device, spec["peak_size"])
        result = {"fp32_gflops": fp32["gflops"], "fp32_kernel": fp32["kernel"], "fp32_all": fp32["all"]}
        if resolve_precision("auto", device) == "bf16":  # the trainer's own choice: CUDA, or a CPU with native bf16
            result["bf16_gflops"] = timing.measure_peak(device, spec["peak_size"], torch.bfloat16)["gflops"]
        return result
    if spec["path"] == "roofline":
        return _roofline(spec, device)
    train, sample = (_project if spec["path"] == "project" else _classic)(spec, device)
    schedule = {k: spec[k] for k in ("warmup_steps", "steps", "repeats", "min_repeat_s")}
    load_before = os.getloadavg()[0]
    # counting runs one real step under a dispatch mode: a warm-up step, never a timed one;
    # compiled graphs hide their operations from the counter (the fast path's count applies)
    compiled = bool(spec.get("options", {}).get("compile"))
    if compiled:
        train()
        flops_train = None
    else:
        flops_train = count_flops(train)
    train_n, train_times = time_repeats(train, device, **schedule)
    flops_sample = count_flops(sample)
    sample_n, sample_times = time_repeats(sample, device, **schedule)
    batch = spec["batch_size"]
    return {
        "train_img_per_s": batch * train_n / statistics.median(train_times),
        "train_steps_per_repeat": train_n,
        "train_times_s": train_times,
        "sample_img_per_s": batch * sample_n / statistics.median(sample_times),
        "sample_calls_per_repeat": sample_n,
        "sample_times_s": sample_times,
        "flops_per_train_image": None if flops_train is None else flops_train / batch,
        "flops_per_sample_image": flops_sample / batch,
        "num_threads": torch.get_num_threads(),
        "load_avg_1min": [load_before, os.getloadavg()[0]],
    }


def _roofline(spec: dict, device: torch.device) -> dict:
    """Every convolution of the project's G and D alone, in the precision and memory format it trains in."""
    from ..config import TrainConfig
    from ..models import Discriminator, Generator
    from .roofline import layer_times, limit_seconds

    cfg = TrainConfig(
        image_size=spec["size"], channels=spec["channels"], g_width=spec["width"], d_width=spec["width"]
    ).resolved()
    G = Generator(latent_dim=spec["latent_dim"], channels=cfg.channels, image_size=cfg.image_size, width=cfg.g_width)
    D = Discriminator(channels=cfg.channels, image_size=cfg.image_size, width=cfg.d_width)
    rows = layer_times(
        G.to(device),
        D.to(device),
        spec["batch_size"],
        device,
        bf16=resolve_precision("auto", device) == "bf16",
        channels_last=cfg.channels_last,
        repeats=spec["repeats"],
        min_repeat_s=min(spec["min_repeat_s"], 0.2),
    )
    return {"limit_s": limit_seconds(rows), "layers": [r.to_dict() for r in rows]}


def run_isolated(spec: dict) -> dict:
    """``run_variant`` in a fresh interpreter; its last stdout line is the result.

    Also records ``other_cpu_load``: the cores that other processes kept busy
    meanwhile (the machine's busy time less this variant's, DataLoader workers
    included), which says how far a shared machine disturbed the figure.
    """
    busy, own, start = busy_cpu_s(), os.times(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan.benchmarks.variants", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark variant {spec['path']} {spec.get('size')} failed:\n{tail}")
    result = json.loads(lines[-1])
    if busy is not None:
        # a waited-for child's CPU time includes that of its own waited-for children
        end = os.times()
        own_s = sum(end[:4]) - sum(own[:4])  # this process and its waited-for children
        result["other_cpu_load"] = max(0.0, (busy_cpu_s() - busy - own_s) / (time.perf_counter() - start))
    return result


def _worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = run_variant(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
