"""Images per second of the trainer's step for G and D widths at one image size, one thread, in one process.

Usage: python scripts/width_throughput.py [SIZE COMBOS]   e.g. 64 64:64:64,64:32:64 (G:D:batch)
Synthetic RGB batches; the step is the trainer's own (build_training), in its default precision.
"""

import sys
import time

import torch

from dcgan.benchmarks.timing import cpu_info
from dcgan.config import TrainConfig
from dcgan.step import build_training

torch.set_num_threads(1)
size = int(sys.argv[1]) if len(sys.argv) > 1 else 32
combos = sys.argv[2] if len(sys.argv) > 2 else "64:64:64,64:32:64,48:48:64,32:32:64"
print(cpu_info())
base = None
for g, d, b in (tuple(map(int, c.split(":"))) for c in combos.split(",")):
    cfg = TrainConfig(image_size=size, channels=3, g_width=g, d_width=d, batch_size=b, data="fake").resolved()
    t = build_training(cfg, torch.device("cpu"))
    real = torch.randn(b, 3, size, size).contiguous(memory_format=torch.channels_last)

    def one():
        t.step(real, torch.randn(b, 100))

    for _ in range(3):
        one()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 6:
        one()
        n += 1
    rate = n * b / (time.perf_counter() - start)
    base = base or rate
    print(
        f"size {size} G{g} D{d} batch {b}: {rate:.0f} img/s ({t.precision}), {rate / base:.2f}x the first", flush=True
    )
