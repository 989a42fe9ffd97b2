"""The latent space: noise from seeds, and paths between latent vectors.

Shared by ``dcgan sample --seeds``, ``dcgan interpolate`` and the demo page, so that
seed 7 is the same image everywhere: a seed's vector depends on that seed alone,
never on the batch it is drawn in, the order of the seeds or the device.
"""

from __future__ import annotations

import torch

from .errors import UserError

SEED_LIMIT = 2**64  # torch.Generator.manual_seed takes [0, 2**64)
MAX_SEEDS = 100_000  # one image each: far more is a typo that would fill the memory


def parse_seeds(text: str, *, max_count: int = MAX_SEEDS) -> list[int]:
    """``"3,10-20"`` -> [3, 10, 11, ..., 20]; seeds are integers in [0, 2**64), ranges inclusive, at most
    ``max_count`` of them (counted before any list is built)."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first, last = (int(low), int(high)) if dash else (int(part), int(part))
        except ValueError:
            raise UserError(f"bad seed list {text!r}: expected integers and ranges like 3,10-20") from None
        if first < 0 or last < first:
            raise UserError(f"bad seed range {part!r} in {text!r}: seeds are >= 0 and ranges go low-high")
        if last >= SEED_LIMIT:
            raise UserError(f"seed {last} in {text!r} is too large; seeds are below 2**64")
        if len(seeds) + last - first + 1 > max_count:
            raise UserError(f"{text!r} names more than {max_count:,} seeds; give fewer (one image is made per seed)")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise UserError(f"no seeds in {text!r}; give a list like 0-63 or 3,10-20")
    return seeds


def seed_noise(seeds: list[int], latent_dim: int) -> torch.Tensor:
    """z [N, latent_dim] on the CPU, row k drawn from a generator seeded with ``seeds[k]`` alone."""
    return torch.stack([torch.randn(latent_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line from ``a`` (t=0) to ``b`` (t=1); ``t`` [T] gives [T, D]."""
    t = t.to(a.dtype)[:, None]
    return a[None] * (1 - t) + b[None] * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Great-circle path from ``a`` to ``b`` with the norm interpolated linearly.

    Gaussian noise lives near a sphere of radius sqrt(latent_dim); a straight line cuts
    through its inside, where the generator saw no training noise, so walks look greyer
    midway. Nearly parallel vectors fall back to ``lerp`` (the angle is too small to divide by).
    """
    t = t.to(a.dtype)[:, None]
    na, nb = a.norm(), b.norm()
    cos = torch.clamp((a / na) @ (b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return lerp(a, b, t[:, 0])
    so = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) / so) * (a / na) + (torch.sin(t * omega) / so) * (b / nb)
    return direction * (na * (1 - t) + nb * t)


def walk(points: torch.Tensor, frames: int, *, mode: str = "slerp", loop: bool = False) -> torch.Tensor:
    """A path through ``points`` [K, D], ``frames`` frames per leg: [(K-1 or K) * frames (+1), D].

    Each leg excludes its end so legs join without repeated frames; an open path
    ends on its last point, a loop ends one frame before returning to the first.
    """
    if mode not in ("slerp", "lerp"):
        raise UserError(f"unknown walk mode {mode!r}; choose slerp or lerp")
    if frames < 2:
        raise UserError(f"--frames must be at least 2, got {frames}")
    if len(points) < 2:
        raise UserError("a walk needs at least two points (seeds)")
    path = torch.cat([points, points[:1]]) if loop else points
    step = slerp if mode == "slerp" else lerp
    t = torch.arange(frames, dtype=points.dtype) / frames
    legs = [step(path[i], path[i + 1], t) for i in range(len(path) - 1)]
    if not loop:
        legs.append(path[-1:])
    return torch.cat(legs)
