"""Timing for ``dcgan bench``: median repetitions, FLOP counts, the matrix-product peak, the CPU.

Each measured call is CUDA-synchronised at both ends; FLOPs are counted with
``torch.utils.flop_counter`` (convolutions and matrix products: the model's arithmetic).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeats(
    fn, device: torch.device, *, warmup_steps: int, steps: int, repeats: int, min_repeat_s: float
) -> tuple[int, list[float]]:
    """Warm up, then time ``repeats`` repetitions of ``n`` calls; return (n, seconds per repetition).

    ``n`` is ``steps``, raised so that one repetition lasts about ``min_repeat_s``
    by the duration of the last warm-up call.
    """
    per_call = None
    for _ in range(warmup_steps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        per_call = time.perf_counter() - start
    n = steps
    if per_call is not None and per_call > 0:
        n = max(steps, math.ceil(min_repeat_s / per_call))
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return n, times


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _rate(fn, flops: int, device: torch.device, repeats: int) -> float:
    # on a GPU one product takes milliseconds: several per repetition keep the timer's resolution out
    n, times = time_repeats(
        fn, device, warmup_steps=3, steps=1, repeats=repeats, min_repeat_s=0.0 if device.type == "cpu" else 0.1
    )
    return flops * n / statistics.median(times) / 1e9


def peak_candidates(size: int) -> list[tuple[str, tuple]]:
    """The kernels whose best rate is taken as the peak: (name, shape).

    Matrix products of two sizes, and on the CPU also convolutions: there the model's
    convolutions run in oneDNN, while a matrix product runs in the BLAS, which on some
    CPUs takes a narrower vector path. One matrix size alone under-reads the peak and
    lets a model run at "more than 100%" of it.
    """
    side = max(16, size // 8)
    return [("matmul", (size,)), ("matmul", (size // 2,)), ("conv1x1", (64, side * 2, 32)), ("conv3x3", (32, side, 32))]


def measure_peak(device: torch.device, size: int, dtype: torch.dtype = torch.float32, repeats: int = 5) -> dict:
    """The best GFLOP/s over ``peak_candidates`` (matrix products only on CUDA), and which kernel gave it."""
    rates = {}
    for name, shape in peak_candidates(size):
        if name == "matmul":
            (n,) = shape
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            rates[f"matmul {n}^2"] = _rate(lambda: torch.mm(a, b), 2 * n**3, device, repeats)
        elif device.type == "cpu":
            batch, channels, side = shape
            k = 1 if name == "conv1x1" else 3
            x = torch.randn(batch, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
            conv = torch.nn.Conv2d(channels, channels, k, padding=k // 2, bias=False).to(dtype)
            conv = conv.to(memory_format=torch.channels_last).requires_grad_(False)
            flops = 2 * batch * side * side * channels * channels * k * k
            rates[f"{name} {batch}x{channels}x{side}^2"] = _rate(lambda: conv(x), flops, device, repeats)
    best = max(rates, key=rates.get)
    return {"gflops": rates[best], "kernel": best, "all": rates}


def cpu_info() -> dict:
    """The CPU's model and vector extensions: figures from different CPUs are not comparable."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile")
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {"model": model, "extensions": [f for f in wanted if f in flags], "torch_capability": capability}


def busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
