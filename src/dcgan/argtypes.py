"""Option types with ranges, checked by argparse at the door: before any file is read or any work starts.

``count(low, high)`` is an integer in [low, high]; ``number(...)`` a finite float with optional bounds;
``SEED`` an integer in [0, 2**64), what ``torch.Generator.manual_seed`` takes. The upper bounds are
far above any useful value and far below what would exhaust memory or overflow a C integer: a typo
(an extra digit or three) is refused in one line instead of running the machine out of memory.
``TRAIN_TYPES`` gives ``dcgan train``'s options theirs; lower bounds there stay with
``options.validate``, which a Python caller goes through too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes [0, 2**64)
MAX_IMAGES = 1_000_000  # images one command generates (sample, eval, nearest)
MAX_SEEDS = 100_000  # one forward pass each: already hours on a CPU
MAX_FRAMES = 10_000
MAX_LATENT_DIM = 16_384
MAX_WIDTH = 4_096  # base feature maps: 4096 at 64 px is tens of GB of weights
MAX_BATCH = 65_536


def count(low: int = 0, high: int | None = None) -> Callable[[str], int]:
    """An integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {value:,}")
        return value

    parse.__name__ = "int"
    return parse


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite float in [low, high] (or (low, high] with ``low_open``); nan and inf are refused."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {'above' if low_open else 'at least'} {low:g}, got {value:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {value:g}")
        return value

    parse.__name__ = "float"
    return parse


SEED = count(0, SEED_LIMIT - 1)
POSITIVE = number(0.0, low_open=True)
FINITE = number()

# dcgan train: finiteness and upper bounds; options.validate keeps the lower bounds and their messages
TRAIN_TYPES: dict[str, Callable[[str], object]] = {
    "seed": SEED,
    "latent_dim": count(-(2**31), MAX_LATENT_DIM),
    "g_width": count(-(2**31), MAX_WIDTH),
    "d_width": count(-(2**31), MAX_WIDTH),
    "batch_size": count(-(2**31), MAX_BATCH),
    "num_samples": count(-(2**31), 4096),
    "num_workers": count(-(2**31), 256),
    "eval_num_images": count(-(2**31), MAX_IMAGES),
    "r1_every_steps": count(-(2**31), 2**31 - 1),
    "lr_warmup_steps": count(-(2**31), 2**31 - 1),
    "steps": count(-(2**31), 2**62),
    "epochs": count(-(2**31), 2**31 - 1),
    "max_images": count(-(2**31), 2**62),
    **{
        name: count(-(2**31), 2**62)
        for name in (
            "log_every_steps",
            "sample_every_steps",
            "checkpoint_every_steps",
            "keep_every_steps",
            "eval_every_steps",
        )
    },
    **{
        name: FINITE
        for name in (
            "lr_g",
            "lr_d",
            "beta1",
            "beta2",
            "real_label",
            "r1_gamma",
            "ema_decay",
            "minutes",
            "keep_every_minutes",
        )
    },
}


def at_most(high: int) -> Callable[[str], int]:
    """An integer up to ``high``; its lower bound is the command's own check, with the command's message."""
    return count(-(2**63), high)


# a GIF stores each frame's duration in 16-bit centiseconds (at most 655 s): 0.01 fps, 100 s a frame, fits
FPS = number(0.01, 1000.0)
