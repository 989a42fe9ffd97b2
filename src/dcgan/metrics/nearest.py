"""The memorisation check: are samples closer to the training images than fresh real images are?

For every sample, the distance to its nearest training image; for every held-out
test image, the same. A generator that invents new images sits about as far from
the training set as unseen real data does (ratio of medians near 1); one that
replays training images sits much closer (ratio near 0). Distances are measured
in the evaluator's feature space and in pixel space (L2 over pixels in [0, 1]),
the two views of the DCGAN paper's own check.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..models import Generator

QUANTILES = (0.01, 0.1, 0.5, 0.9)
FLAG_RATIO = 0.5  # samples at half the real-to-train distance: far closer than unseen real data gets


@torch.no_grad()
def nearest(query: torch.Tensor, reference: torch.Tensor, *, k: int = 1, chunk_rows: int = 256):
    """(distances [N, k], indices [N, k]) of each query row's k nearest reference rows, nearest first."""
    k = min(k, len(reference))
    dists, indices = [], []
    reference = reference.float()
    for chunk in query.float().split(chunk_rows):
        d, i = torch.cdist(chunk, reference).topk(k, dim=1, largest=False)
        dists.append(d)
        indices.append(i)
    return torch.cat(dists), torch.cat(indices)


def pixels(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> [N, C*H*W] in [0, 1]."""
    return images_u8.flatten(1).float() / 255


@dataclass(frozen=True)
class DistanceReport:
    """Nearest-training-image distances in one space, for the samples and for unseen real images."""

    space: str
    sample_quantiles: dict[str, float]
    test_quantiles: dict[str, float]
    ratio: float  # median sample distance / median test distance; near 1: no copying
    near_copy_share: float  # samples closer than the nearest 1% of test images (1% for real data)
    flagged: bool

    def to_dict(self) -> dict:
        return asdict(self)


def distance_report(space: str, sample_to_train: torch.Tensor, test_to_train: torch.Tensor) -> DistanceReport:
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    s, t = sample_to_train.double(), test_to_train.double()
    sq, tq = torch.quantile(s, q), torch.quantile(t, q)
    ratio = (sq[2] / tq[2]).item() if tq[2] > 0 else float("inf")
    return DistanceReport(
        space=space,
        sample_quantiles={f"q{round(p * 100):02d}": v for p, v in zip(QUANTILES, sq.tolist())},
        test_quantiles={f"q{round(p * 100):02d}": v for p, v in zip(QUANTILES, tq.tolist())},
        ratio=ratio,
        near_copy_share=(s < tq[0]).double().mean().item(),
        flagged=ratio < FLAG_RATIO,
    )


def memorisation(
    samples_u8: torch.Tensor,
    train_u8: torch.Tensor,
    test_u8: torch.Tensor,
    extractor,
    *,
    train_features: torch.Tensor | None = None,
    k: int = 1,
    batch_size: int = 250,
):
    """Reports in feature and pixel space, plus the k nearest training indices of every sample in each.

    Returns ({space: DistanceReport}, {space: indices [N, k]}).
    """
    from .evaluate import extract

    def features(images):
        return extract(iter(images.split(batch_size)), extractor, total=len(images), desc="", progress=False)[0]

    device = next(extractor.parameters()).device
    train_f = train_features if train_features is not None else features(train_u8.to(device))
    spaces = {
        "features": (features(samples_u8.to(device)), features(test_u8.to(device)), train_f),
        "pixels": (pixels(samples_u8), pixels(test_u8), pixels(train_u8)),
    }
    reports, neighbours = {}, {}
    for space, (s, t, r) in spaces.items():
        s, t, r = s.cpu(), t.cpu(), r.cpu()
        sample_d, sample_i = nearest(s, r, k=k)
        test_d, _ = nearest(t, r, k=1)
        reports[space] = distance_report(space, sample_d[:, 0], test_d[:, 0])
        neighbours[space] = sample_i
    return reports, neighbours


def neighbour_grid(samples_u8: torch.Tensor, train_u8: torch.Tensor, neighbours: dict, *, rows_per_block: int = 16):
    """Each sample, then its nearest training images in feature space, then in pixel space.

    Rows are laid out in blocks of ``rows_per_block`` side by side, so 64 samples make a
    near-square picture. Grey dividers set off the sample and the two spaces; wider gaps the blocks.
    """
    from PIL import Image

    from ..explore import PAD, to_pil

    n, c, h, w = samples_u8.shape
    k = neighbours["features"].shape[1]
    cols = 1 + 2 * k
    gap = 3 * PAD  # extra space between the sample and each group of neighbours
    block_w = cols * (w + PAD) + 2 * gap
    blocks = -(-n // rows_per_block)
    rows = min(n, rows_per_block)
    mode = "L" if c == 1 else "RGB"
    block_gap = 4 * gap
    grid = Image.new(mode, (PAD + blocks * block_w + (blocks - 1) * block_gap, PAD + rows * (h + PAD)), 0)
    mid = 160 if c == 1 else (160, 160, 160)
    for i in range(n):
        x0, y = PAD + (i // rows_per_block) * (block_w + block_gap), PAD + (i % rows_per_block) * (h + PAD)
        tiles = (
            [samples_u8[i]]
            + [train_u8[j] for j in neighbours["features"][i]]
            + [train_u8[j] for j in neighbours["pixels"][i]]
        )
        for col, tile in enumerate(tiles):
            x = x0 + col * (w + PAD) + (gap if col >= 1 else 0) + (gap if col >= 1 + k else 0)
            grid.paste(to_pil(tile), (x, y))
        for divider in (x0 + w + PAD + gap // 2 - 1, x0 + (1 + k) * (w + PAD) + gap + gap // 2 - 1):
            grid.paste(mid, (divider, y, divider + 1, y + h))
    return grid


def format_reports(reports: dict, info: dict) -> str:
    lines = [
        f"{info['num_samples']:,} samples (seeds 0-{info['num_samples'] - 1}) and {info['num_test']:,} "
        f"{info['test_data']} test images against {info['num_train']:,} {info['train_data']} training images"
    ]
    for space, r in reports.items():
        lines.append(f"{space}: nearest-training-image distance, quantiles 1% / 10% / 50% / 90%")
        lines.append("  samples  " + " / ".join(f"{v:.4g}" for v in r.sample_quantiles.values()))
        lines.append("  test     " + " / ".join(f"{v:.4g}" for v in r.test_quantiles.values()))
        verdict = (
            "FLAGGED: samples sit far closer to training images than unseen real images do"
            if r.flagged
            else "no sign of copying"
        )
        lines.append(
            f"  ratio of medians {r.ratio:.3f}; samples nearer than the nearest 1% of test images: "
            f"{r.near_copy_share:.1%}; {verdict}"
        )
    return "\n".join(lines)


def check_run(
    run: str | os.PathLike,
    *,
    num_images: int = 64,
    num_compare: int = 1000,
    k: int = 3,
    test_data: str | None = None,
    test_root: str | None = None,
    extractor: str | None = None,
    inception_weights: str | None = None,
    evaluator_weights: str | None = None,
    device: torch.device,
    ema: bool = True,
    progress: bool = True,
):
    """``dcgan nearest``: samples of seeds 0..num_compare-1 against the run's training data.

    Returns (reports, info, the picture of the first ``num_images`` samples).
    """
    from .. import checkpoint as ckpt
    from ..config import TrainConfig
    from ..data import DataSpec, InMemoryImages, decode_all, load
    from ..explore import seed_images
    from .report import EvalOptions, prepare

    if num_images < 1 or num_compare < 2 or k < 1:
        raise UserError("-n and -k must be at least 1 and --num-compare at least 2")
    num_compare = max(num_compare, num_images)
    cfg = TrainConfig.from_dict(ckpt.config_of(ckpt.load_training(run)))
    test_name = test_data or cfg.data
    if test_name in ("mnist-5k", "folder", "fake", "lsun") and test_root is None:
        raise UserError(
            f"{test_name} has no test split; give held-out images with --test-data mnist --test-root "
            "DIR or --test-data folder --test-root DIR"
        )
    opts = EvalOptions(
        extractor=extractor, inception_weights=inception_weights, evaluator_weights=evaluator_weights, progress=progress
    )
    extractor, load_train, key = prepare(cfg, opts)
    test_root = test_root if test_root is not None or test_name != cfg.data else cfg.data_root

    def in_memory(data):
        return data if isinstance(data, InMemoryImages) else decode_all(data, progress=progress)

    train = in_memory(load_train()).images
    if cfg.max_images is not None:  # the images the run trained on (--max-images takes the first N)
        train = train[: cfg.max_images]
        key = {**key, "max_images": cfg.max_images}
    test_spec = DataSpec(
        name=test_name,
        root=test_root,
        split="train" if test_name == "folder" else "test",
        channels=cfg.channels,
        image_size=cfg.image_size,
        in_memory=False,
    )
    test = in_memory(load(test_spec, progress=progress)).images[:num_compare]
    G = Generator.from_checkpoint(run, device, ema=ema)
    if G.num_classes:  # a conditional run: every class alike, as dcgan eval draws them
        from ..sample import generate

        samples = generate(G, num_compare, seed=0)
    else:
        samples = seed_images(G, list(range(num_compare)))
    extractor = extractor.to(device).eval()
    from .evaluate import real_features

    train_features, _ = real_features(train, extractor, key=key, progress=progress)
    reports, neighbours = memorisation(samples, train, test, extractor, train_features=train_features, k=k)
    picture = neighbour_grid(samples[:num_images], train, {s: i[:num_images] for s, i in neighbours.items()})
    info = {
        "num_samples": len(samples),
        "num_test": len(test),
        "num_train": len(train),
        "train_data": cfg.data,
        "test_data": test_name,
        "k": k,
    }
    return reports, info, picture


def save_picture(picture, out: str | os.PathLike) -> Path:
    from ..outputs import writing

    out = Path(out)
    with writing(out, "the picture") as tmp:
        picture.save(tmp, format="PNG")
    return out
