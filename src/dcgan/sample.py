"""Images from a checkpoint: a grid PNG, a folder of PNGs, or an .npz of uint8 arrays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from .config import TrainConfig
from .data import to_uint8
from .ema import recalibrated
from .errors import UserError
from .fileio import atomic_path, check_new_folder, check_output_file, written
from .models import Generator
from .step import build_generator

FORMATS = ("grid", "folder", "npz")


def load_generator(path: str | Path, device: torch.device, *, ema: bool = True) -> Generator:
    """The generator of a checkpoint (its EMA when present), in eval mode with matching BN statistics.

    Works on any device whatever device wrote the checkpoint.
    """
    state = ckpt.load(path, map_location="cpu")
    cfg = TrainConfig.from_dict(state["config"])
    G = build_generator(cfg)
    weights = state.get("G_ema") if ema and state.get("G_ema") is not None else state["G"]
    try:
        G.load_state_dict(weights)
    except RuntimeError as e:
        raise UserError(f"checkpoint weights do not fit its own config: {str(e).splitlines()[0]}") from None
    return recalibrated(G.to(device), seed=cfg.seed)


@torch.no_grad()
def generated_batches(
    generator: nn.Module, num_images: int, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """uint8 batches of ``num_images`` generated images, reproducible for a seed.

    Under torchrun each rank draws the same noise and generates its slice of every batch,
    so the ranks together generate exactly the images of one process.
    """
    device = next(generator.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        z = torch.randn(n, generator.latent_dim, device=device, generator=rng)[rank::world_size]
        if len(z):
            yield to_uint8(generator(z))


def generate(G: Generator, num_images: int, *, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """``num_images`` uint8 images [N, C, H, W] on the CPU, reproducible for a seed."""
    return torch.cat([b.cpu() for b in generated_batches(G, num_images, seed=seed, batch_size=batch_size)])


def output_path(out: Path, fmt: str) -> Path:
    """Where ``write`` puts ``fmt``: a grid or an .npz gets its extension when it lacks it.

    numpy appends .npz by itself; doing it here means the path printed is the path written.
    """
    suffix = {"grid": ".png", "npz": ".npz"}.get(fmt)
    if suffix and out.suffix.lower() != suffix:
        return out.with_name(out.name + suffix)
    return out


def check_output(out: Path, fmt: str) -> None:
    """Fail before any work when ``out`` cannot take ``fmt``; never overwrite a folder of images."""
    if fmt == "folder":
        check_new_folder(out, "image folder")
    else:
        check_output_file(out, "grid" if fmt == "grid" else ".npz file")


def infer_format(out: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
        return fmt
    if out.suffix.lower() == ".png":
        return "grid"
    if out.suffix.lower() == ".npz":
        return "npz"
    if out.suffix == "":
        return "folder"
    raise UserError(f"cannot tell the format from {out}; use a .png, .npz or folder path, or --format")


def write(images: torch.Tensor, out: Path, fmt: str) -> None:
    """Write uint8 images [N, C, H, W]; a grid or .npz appears whole or not at all."""
    from PIL import Image
    from torchvision.utils import make_grid

    with written("images", out):
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "grid":
            grid = make_grid(images, nrow=max(1, int(math.ceil(math.sqrt(len(images))))), padding=2)
            with atomic_path(out) as tmp:
                Image.fromarray(grid.permute(1, 2, 0).numpy().squeeze()).save(tmp, format="PNG")
        elif fmt == "npz":
            with atomic_path(out) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, images=images.permute(0, 2, 3, 1).numpy())  # N, H, W, C uint8
        else:
            out.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                Image.fromarray(image.permute(1, 2, 0).numpy().squeeze()).save(out / f"{i:06d}.png")
