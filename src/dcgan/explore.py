"""Looking at a trained generator: seed grids, latent walks, vector arithmetic, the progress GIF.

Every image here comes from ``latent.seed_noise``, so seed 7 is the same digit in
``dcgan sample --seeds``, ``dcgan interpolate`` and ``dcgan arithmetic``. Grids
are drawn with Pillow (labels under each cell); GIFs are written by Pillow and
MP4s by imageio-ffmpeg (the ``video`` extra).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import outputs
from .data import to_uint8
from .errors import UserError
from .latent import parse_seeds, seed_noise, walk
from .outputs import writing, writing_folder

ANIMATION_SUFFIXES = (".gif", ".mp4")
PROGRESS_GIF = "progress.gif"
PAD = 2  # pixels between cells, as in the training grids


# --------------------------------------------------------------------------- generating


@torch.no_grad()
def images_of(G: nn.Module, z: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """uint8 images [N, C, H, W] on the CPU for latent vectors ``z`` [N, D] (any device)."""
    device = next(G.parameters()).device
    return torch.cat([to_uint8(G(chunk.to(device))).cpu() for chunk in z.split(batch_size)])


def seed_images(G: nn.Module, seeds: list[int]) -> torch.Tensor:
    """Image k is ``G(seed_noise([seeds[k]]))`` drawn alone: the same pixels whatever the other seeds.

    One forward pass per seed: convolution kernels may sum in another order for another batch
    size, and a last-bit difference can move a pixel by one level; the demo page draws seeds the same way.
    """
    return images_of(G, seed_noise(seeds, G.latent_dim), batch_size=1)


# --------------------------------------------------------------------------- writing files


def check_output_file(out: Path, suffixes: tuple[str, ...], *, owned: tuple[str, ...] = ()) -> None:
    """Fail before any work on an output path that cannot be written as a file of these types, or that
    would replace a checkpoint or a run's file (``outputs.check_output``; ``owned``: what it may replace)."""
    if out.suffix.lower() not in suffixes:
        raise UserError(f"cannot write {out}: the output must end in {', '.join(suffixes)}")
    outputs.check_output(out, owned=owned)


def to_pil(image: torch.Tensor):
    """uint8 [C, H, W] -> a Pillow image ("L" for one channel, "RGB" for three)."""
    from PIL import Image

    return Image.fromarray(
        image.permute(1, 2, 0).numpy().squeeze(-1) if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
    )


def _font(size_px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def labelled_grid(
    images: torch.Tensor, labels: list[str] | None = None, *, nrow: int, scale: int = 1, label_px: int = 11
):
    """A Pillow grid of uint8 images [N, C, H, W], ``nrow`` per row, each with its label underneath."""
    from PIL import Image, ImageDraw

    n, c, h, w = images.shape
    h, w = h * scale, w * scale
    rows = math.ceil(n / nrow)
    label_h = label_px + 3 if labels else 0
    mode = "L" if c == 1 else "RGB"
    grid = Image.new(mode, (PAD + nrow * (w + PAD), PAD + rows * (h + label_h + PAD)), 0)
    draw, font = ImageDraw.Draw(grid), _font(label_px)
    white = 255 if c == 1 else (255, 255, 255)
    for i, image in enumerate(images):
        x, y = PAD + (i % nrow) * (w + PAD), PAD + (i // nrow) * (h + label_h + PAD)
        grid.paste(to_pil(image).resize((w, h), Image.NEAREST), (x, y))
        if labels:
            text = str(labels[i])
            width = draw.textlength(text, font=font)
            draw.text((x + (w - width) / 2, y + h + 1), text, fill=white, font=font)
    return grid


def write_seed_images(images: torch.Tensor, seeds: list[int], out: Path, fmt: str) -> None:
    """``dcgan sample --seeds``: a labelled grid, one PNG per seed (``seed000007.png``) or an .npz."""
    if fmt == "grid":
        check_output_file(out, (".png",))
        grid = labelled_grid(images, [str(s) for s in seeds], nrow=max(1, math.ceil(math.sqrt(len(images)))))
        with writing(out, "images") as tmp:
            grid.save(tmp, format="PNG")
    elif fmt == "npz":
        check_output_file(out, (".npz",))
        with writing(out, "images") as tmp:
            with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
                np.savez_compressed(
                    f, images=images.permute(0, 2, 3, 1).numpy(), seeds=np.asarray(seeds, dtype=np.uint64)
                )
    else:
        outputs.check_output(out, "image folder", folder=True)
        with writing_folder(out, "images") as tmp:  # complete, or not there at all
            for seed, image in zip(seeds, images):
                to_pil(image).save(tmp / f"seed{seed:06d}.png")


def _upscaled(frames: np.ndarray, min_side_px: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor to at least ``min_side_px``, to an even size."""
    factor = max(1, math.ceil(min_side_px / min(frames.shape[1:3])))
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]  # video encoders want even sizes


def write_animation(frames: list, out: Path, *, fps: float, hold_last_ms: int = 0) -> None:
    """Pillow images (one per frame, same size) as a looping GIF (Pillow) or an MP4 (imageio-ffmpeg)."""
    if not 0.01 <= fps <= 1000:  # the range argtypes.FPS gives the CLI; a GIF frame lasts at most 655 s
        raise UserError(f"fps must be between 0.01 and 1000, got {fps}")
    duration_ms = round(1000 / fps)
    if out.suffix.lower() == ".gif":
        # grey RGB would be quantised to an adaptive palette; as "L" the GIF keeps every grey exactly
        frames = [f.convert("L") if f.mode == "RGB" and _is_grey(f) else f for f in frames]
        durations = [duration_ms] * len(frames)
        durations[-1] += hold_last_ms
        with writing(out, "the animation") as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
        return
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("writing MP4 needs imageio-ffmpeg: pip install 'dcgan[video]' (or write a .gif)") from None
    array = _upscaled(np.stack([np.asarray(f.convert("RGB")) for f in frames]), 256)
    with writing(out, "the animation") as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (array.shape[2], array.shape[1]),
            fps=fps,
            macro_block_size=1,
            quality=8,
            output_params=["-loglevel", "error"],
        )
        writer.send(None)
        for frame in array:
            writer.send(np.ascontiguousarray(frame))
        writer.close()


def _is_grey(image) -> bool:
    r, g, b = image.split()
    return r.tobytes() == g.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- latent walks


def walk_latents(
    seeds: list[int],
    latent_dim: int,
    *,
    frames: int,
    mode: str = "slerp",
    loop: bool = False,
    direction_seed: int | None = None,
    distance: float = 5.0,
) -> torch.Tensor:
    """Latent vectors [T, W, D] of W parallel walks over T frames.

    Without a direction: one walk (W=1) through the seeds' vectors (``latent.walk``).
    With ``direction_seed``: one walk per seed, each moving its vector along the unit
    vector of that seed's noise from ``-distance`` to ``+distance`` (the seed itself midway);
    ``loop`` goes there and back.
    """
    if direction_seed is None:
        return walk(seed_noise(seeds, latent_dim), frames, mode=mode, loop=loop)[:, None]
    if frames < 2:
        raise UserError(f"--frames must be at least 2, got {frames}")
    u = seed_noise([direction_seed], latent_dim)[0]
    u = u / u.norm()
    t = torch.linspace(-distance, distance, frames)
    if loop:  # back again without repeating either end
        t = torch.cat([t, t.flip(0)[1:-1]])
    return seed_noise(seeds, latent_dim)[None] + t[:, None, None] * u[None, None]


def write_walk(frames_u8: torch.Tensor, out: Path, *, frames_per_row: int, fps: float) -> None:
    """[T, W, C, H, W] frames: a PNG strip grid (one walk per row, or one leg per row) or an animation."""
    from torchvision.utils import make_grid

    steps, walks = frames_u8.shape[:2]
    if out.suffix.lower() == ".png":
        if walks == 1:
            grid = labelled_grid(frames_u8[:, 0], nrow=frames_per_row)
        else:
            grid = labelled_grid(frames_u8.transpose(0, 1).flatten(0, 1), nrow=steps)
        with writing(out, "the walk") as tmp:
            grid.save(tmp, format="PNG")
        return
    nrow = max(1, math.ceil(math.sqrt(walks)))
    pictures = [to_pil(make_grid(frame, nrow=nrow, padding=PAD) if walks > 1 else frame[0]) for frame in frames_u8]
    write_animation(pictures, out, fps=fps)


# --------------------------------------------------------------------------- vector arithmetic

_TOKEN = re.compile(r"\s*(?:(\[[^\]]*\])|(\d+)|([+-]))")


def parse_expression(text: str) -> list[tuple[int, list[int]]]:
    """``"12 - 40 + 7"`` or ``"[1,4,9] - [2,5] + 7"`` -> [(sign, seeds), ...].

    A bracketed group stands for the mean of its seeds' vectors (the paper averages
    three samples per concept); inside brackets ranges work as in ``--seeds``.
    """
    terms: list[tuple[int, list[int]]] = []
    sign, have_sign, position = 1, False, 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise UserError(f"cannot read {text!r} at {text[position:]!r}: use seeds, [groups], + and -")
        group, number, op = match.groups()
        position = match.end()
        if op:
            if have_sign:
                raise UserError(f"two operators in a row in {text!r}")
            sign, have_sign = (-1 if op == "-" else 1), True
            continue
        if terms and not have_sign:
            raise UserError(f"missing + or - between operands in {text!r}")
        terms.append((sign, parse_seeds(group[1:-1] if group else number)))
        sign, have_sign = 1, False
    if not terms or have_sign:
        raise UserError(f'incomplete expression {text!r}; write e.g. "12 - 40 + 7"')
    return terms


def arithmetic(G: nn.Module, terms: list[tuple[int, list[int]]]) -> tuple[torch.Tensor, list[str]]:
    """Images of each operand (a group's mean vector) and of their signed sum, with labels."""
    vectors = [seed_noise(seeds, G.latent_dim).mean(0) for _, seeds in terms]
    result = sum(sign * v for (sign, _), v in zip(terms, vectors))
    labels = []
    for i, (sign, seeds) in enumerate(terms):
        name = str(seeds[0]) if len(seeds) == 1 else f"mean{len(seeds)}"
        labels.append(("-" if sign < 0 else "+" if i else "") + name)
    return images_of(G, torch.stack([*vectors, result])), [*labels, "="]


# --------------------------------------------------------------------------- training progress


def write_progress_gif(
    run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, max_frames: int = 100, fps: float = 10.0
) -> Path | None:
    """``samples/progress.gif`` from the run's fixed-noise grids ``samples/step_*.png``, in step order.

    At most ``max_frames`` grids, evenly spaced, always ending on the last one, which is
    held for a second. Returns the path, or None when the run has no grids yet.
    """
    from PIL import Image

    samples = Path(run_dir) / "samples"
    grids = sorted(samples.glob("step_*.png"))  # zero-padded step numbers sort in step order
    if not grids:
        return None
    if len(grids) > max_frames:
        picks = np.linspace(0, len(grids) - 1, max_frames).round().astype(int) if max_frames > 1 else [-1]
        grids = [grids[i] for i in sorted(set(np.asarray(picks).tolist()))]
    frames = []
    for path in grids:
        try:
            with Image.open(path) as image:
                frames.append(image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy())
        except (OSError, ValueError, SyntaxError) as e:  # a grid cut short or overwritten: leave it out
            print(f"warning: skipping unreadable sample grid {path} ({type(e).__name__})", file=sys.stderr)
    if not frames:
        return None
    sizes = {f.size for f in frames}
    if len(sizes) > 1:  # grids of another run copied in: an animation needs one frame size
        raise UserError(
            f"the sample grids in {samples} have different sizes ({', '.join(map(str, sorted(sizes)))}); "
            "keep one run's grids there"
        )
    out = Path(out) if out is not None else samples / PROGRESS_GIF
    write_animation(frames, out, fps=fps, hold_last_ms=1000)
    return out
