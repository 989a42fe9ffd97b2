"""Augmentations for training on few images: DiffAugment and mirrored reals.

DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
D sees every image, real or fake, through the same random augmentations, built from
differentiable tensor ops so that G still learns through them. D cannot memorise a small
dataset as easily, and G is not taught to make augmented images, because D never sees an
un-augmented one. ``mirror`` is the plainer data augmentation: random x-flips of the reals
only (a dataset doubled by its mirror images), which is safe whenever a mirrored image is as
real as the original.

Written here, not taken from kornia: three batched ops in a few dozen lines, against a heavy
dependency. Every random draw comes from the global torch RNG of the images' device, which the
trainer's checkpoints save, so a resumed run draws the same augmentations as a straight one.
Images are [-1, 1]; the ops may leave that range (a brightened image), as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import UserError

POLICIES = ("color", "translation", "cutout")
TRANSLATION_FRACTION = 1 / 8  # largest shift, of the image side
CUTOUT_FRACTION = 1 / 2  # side of the square cut out, of the image side


def parse_policy(text: str) -> tuple[str, ...]:
    """The names in a policy string such as "color,translation,cutout", in the order they apply; "": off."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name not in POLICIES:
            raise UserError(f"--augment: unknown policy {name!r}; use a comma-separated list of {', '.join(POLICIES)}")
    if len(set(names)) != len(names):
        raise UserError(f"--augment lists a policy twice: {text!r}")
    return names


def diff_augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """``x`` through each op of ``policy`` in turn, fresh random parameters per image; ``x`` itself when empty."""
    for name in policy:
        x = _OPS[name](x)
    return x


def _uniform(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """One number per image, shaped to broadcast over it; drawn in fp32 so the stream does not depend on dtype."""
    u = torch.rand(x.shape[0], 1, 1, 1, device=x.device)
    return (low + (high - low) * u).to(x.dtype)


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add one value in [-0.5, 0.5] to every pixel of an image: up to a quarter of the [-1, 1] range either way."""
    return x + _uniform(x, -0.5, 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's distance from its grey value by a factor in [0, 2] (0: grey, 2: twice as vivid)."""
    if x.shape[1] == 1:  # a grey image has no colour to scale: no work, and no draw from the RNG
        return x
    grey = x.mean(dim=1, keepdim=True)
    return grey + (x - grey) * _uniform(x, 0.0, 2.0)


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale each image's distance from its mean by a factor in [0.5, 1.5]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * _uniform(x, 0.5, 1.5)


def color(x: torch.Tensor) -> torch.Tensor:
    """Brightness, saturation and contrast; on one channel, brightness and contrast."""
    return contrast(saturation(brightness(x)))


def translation(x: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels, up to 1/8 of its side either way on each axis; zeros fill in."""
    n, c, h, w = x.shape
    pad_y, pad_x = int(h * TRANSLATION_FRACTION + 0.5), int(w * TRANSLATION_FRACTION + 0.5)
    dy = torch.randint(-pad_y, pad_y + 1, (n, 1), device=x.device)
    dx = torch.randint(-pad_x, pad_x + 1, (n, 1), device=x.device)
    # output pixel (i, j) reads input pixel (i - dy, j - dx), or past the edge the padding's zeros;
    # each input pixel lands in one place at most, so the backward scatter has no sums to reorder
    padded = F.pad(x, (pad_x, pad_x, pad_y, pad_y))
    rows = torch.arange(h, device=x.device) - dy + pad_y  # (n, h), in padded coordinates
    cols = torch.arange(w, device=x.device) - dx + pad_x  # (n, w)
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad_x))
    out = out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    # gather writes NCHW; hand D the layout it was given (channels_last by default), not a conversion per conv
    return out.contiguous(memory_format=_memory_format(x))


def cutout(x: torch.Tensor) -> torch.Tensor:
    """Zero one square per image, half the image side, placed so that at least half of it lies inside
    on each axis: every pixel, corners included, can be hidden."""
    n, _, h, w = x.shape
    size_y, size_x = int(h * CUTOUT_FRACTION + 0.5), int(w * CUTOUT_FRACTION + 0.5)
    top = torch.randint(-(size_y // 2), h - (size_y + 1) // 2 + 1, (n, 1), device=x.device)
    left = torch.randint(-(size_x // 2), w - (size_x + 1) // 2 + 1, (n, 1), device=x.device)
    rows = torch.arange(h, device=x.device) - top  # (n, h): the row's offset into the square
    cols = torch.arange(w, device=x.device) - left
    inside = ((rows >= 0) & (rows < size_y)).view(n, 1, h, 1) & ((cols >= 0) & (cols < size_x)).view(n, 1, 1, w)
    return x * (~inside).to(x.dtype)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def mirror(x: torch.Tensor) -> torch.Tensor:
    """Each image flipped left-right with probability 1/2 (StyleGAN's --mirror), on ``x``'s device."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(3), x)
