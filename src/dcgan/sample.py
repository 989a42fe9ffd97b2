"""Images from a checkpoint: a grid PNG, a folder of PNGs, or an .npz of uint8 arrays.

A class-conditional generator draws image ``i`` of a set as class ``i mod K`` (every class equally
often, ``class_labels``) unless one class is asked for; its grid has one row per class.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import to_uint8
from .errors import UserError
from .models import Generator
from .outputs import check_output as check_output_path
from .outputs import writing, writing_folder

FORMATS = ("grid", "folder", "npz")


class OneClass(nn.Module):
    """A class-conditional generator fixed to one class: ``G(z)`` like an unconditional one.

    What the latent-space tools (seed grids, walks, arithmetic) draw from a conditional run.
    """

    def __init__(self, G: Generator, label: int) -> None:
        super().__init__()
        self.G, self.label = G, label
        self.latent_dim, self.channels, self.image_size, self.num_classes = G.latent_dim, G.channels, G.image_size, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(z, torch.full((len(z),), self.label, dtype=torch.long, device=z.device))


def chosen_class(G: Generator, text: str | None) -> int | None:
    """``--class`` as an index into G's classes (None when not given); one line when it does not apply."""
    if text is None:
        return None
    return parse_class(text, G.class_names if G.num_classes else ())


def one_class(G: Generator, text: str | None, command: str) -> nn.Module:
    """G itself when unconditional; a conditional G fixed to ``--class``, which it then needs."""
    label = chosen_class(G, text)
    if not G.num_classes:
        return G
    if label is None:
        shown = ", ".join(G.class_names[:20]) + (", ..." if len(G.class_names) > 20 else "")
        raise UserError(f"this run is class-conditional: {command} needs --class NAME_OR_INDEX (classes: {shown})")
    return OneClass(G, label)


def class_labels(generator: nn.Module, start: int, stop: int, label: int | None = None) -> torch.Tensor | None:
    """The classes of images ``start..stop-1`` of a set: ``label``, or each class in turn; None if unconditional."""
    num_classes = getattr(generator, "num_classes", 0)
    if not num_classes:
        if label is not None:
            raise UserError("this generator is unconditional; --class applies to class-conditional runs")
        return None
    if label is not None:
        return torch.full((stop - start,), label, dtype=torch.long)
    return torch.arange(start, stop) % num_classes


def class_grid(num_images: int, num_classes: int) -> tuple[torch.Tensor, int]:
    """Labels for a grid with one row per class (``num_images // num_classes`` columns), and the row length."""
    columns = num_images // num_classes
    if columns == 0:  # fewer images than classes: one of each of the first classes
        return torch.arange(num_images), num_images
    return torch.arange(columns * num_classes) // columns, columns


def parse_class(text: str, class_names: tuple[str, ...] | list[str]) -> int:
    """``--class``: a class name, or an index into the run's classes."""
    if not class_names:
        raise UserError("--class applies to class-conditional runs (dcgan train --conditional); this one is not")
    if text in class_names:
        return list(class_names).index(text)
    if text.lstrip("-").isdigit():
        index = int(text)
        if 0 <= index < len(class_names):
            return index
        raise UserError(f"--class {index} is out of range; this run has classes 0 to {len(class_names) - 1}")
    shown = ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else "")
    raise UserError(f"unknown class {text!r}; this run's classes are {shown}")


@torch.no_grad()
def generated_batches(
    generator: nn.Module,
    num_images: int,
    *,
    seed: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    label: int | None = None,
) -> Iterator[torch.Tensor]:
    """uint8 batches of ``num_images`` generated images, reproducible for a seed.

    Under torchrun each rank draws the same noise and generates its slice of every batch,
    so the ranks together generate exactly the images of one process. A conditional generator
    draws the classes of ``class_labels``.
    """
    device = next(generator.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, num_images, batch_size):
        n = min(batch_size, num_images - start)
        z = torch.randn(n, generator.latent_dim, device=device, generator=rng)[rank::world_size]
        y = class_labels(generator, start, start + n, label)
        if len(z):
            yield to_uint8(generator(z) if y is None else generator(z, y[rank::world_size].to(device)))


def generate(
    G: Generator, num_images: int, *, seed: int = 0, batch_size: int = 500, label: int | None = None
) -> torch.Tensor:
    """``num_images`` uint8 images [N, C, H, W] on the CPU, reproducible for a seed."""
    batches = [b.cpu() for b in generated_batches(G, num_images, seed=seed, batch_size=batch_size, label=label)]
    return batches[0] if len(batches) == 1 else torch.cat(batches)  # one batch needs no copy


def class_rows(G: Generator, num_images: int, *, seed: int = 0) -> tuple[torch.Tensor, int]:
    """A conditional generator's grid images, one row per class, and the row length."""
    labels, nrow = class_grid(num_images, G.num_classes)
    device = next(G.parameters()).device
    rng = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(len(labels), G.latent_dim, device=device, generator=rng)
        return to_uint8(G(z, labels.to(device))).cpu(), nrow


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
    check_output_path(out, {"grid": "grid", "npz": ".npz file"}.get(fmt, "image folder"), folder=fmt == "folder")


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


def write(
    images: torch.Tensor | Iterator[torch.Tensor],
    out: Path,
    fmt: str,
    *,
    labels: torch.Tensor | None = None,
    nrow: int | None = None,
) -> None:
    """Write uint8 images [N, C, H, W]; a grid, an .npz or a folder appears whole or not at all.

    ``labels`` (a conditional generator's classes) go into an .npz beside the images; ``nrow``
    sets a grid's row length (default: a square). A folder also takes an iterator of batches,
    written as they come (``dcgan sample -n`` of more images than fit in memory)."""
    from PIL import Image
    from torchvision.utils import make_grid

    if fmt == "folder":
        with writing_folder(out, "images") as tmp:
            i = 0
            for batch in [images] if isinstance(images, torch.Tensor) else images:
                for image in batch:
                    Image.fromarray(image.permute(1, 2, 0).numpy().squeeze()).save(tmp / f"{i:06d}.png")
                    i += 1
        return
    if not isinstance(images, torch.Tensor):
        images = torch.cat(list(images))
    with writing(out, "images") as tmp:
        if fmt == "grid":
            grid = make_grid(images, nrow=nrow or max(1, int(math.ceil(math.sqrt(len(images))))), padding=2)
            Image.fromarray(grid.permute(1, 2, 0).numpy().squeeze()).save(tmp, format="PNG")
        else:
            with open(tmp, "wb") as f:
                arrays = {"images": images.permute(0, 2, 3, 1).numpy()}  # N, H, W, C uint8
                if labels is not None:
                    arrays["labels"] = labels.numpy()
                np.savez_compressed(f, **arrays)
