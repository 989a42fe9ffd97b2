"""``dcgan eval``: evaluate a checkpoint against its dataset, and the table that reports it.

The real data defaults to the checkpoint's own (its dataset, data root, image
size and channels); the extractor to the offline digit evaluator for grayscale data
and the offline CIFAR-10 evaluator for colour. Inception-v3, the standard of papers,
is one flag away for machines that can download its weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .. import checkpoint as ckpt
from ..data import DataSpec, load
from ..errors import UserError
from ..models import Generator
from .evaluate import EvalResult, check_fid_images, evaluate

EXTRACTORS = ("digits", "cifar10", "inception")


@dataclass(frozen=True)
class EvalOptions:
    num_images: int = 10_000
    extractor: str | None = None  # None: digits for grayscale data, cifar10 for colour
    inception_weights: str | None = None
    evaluator_weights: str | None = None  # None: the shipped evaluator (digits or cifar10)
    data: str | None = None  # None: the checkpoint's dataset
    data_root: str | None = None
    split: str = "train"  # FID is conventionally measured against the training images
    seed: int = 0
    batch_size: int = 250
    cache_dir: str | None = None  # None: ~/.cache/dcgan/stats
    ema: bool = True
    progress: bool = True
    download: bool = False  # fetch the real dataset when it is not on disk
    precision_recall_k: int | None = 3  # None: skip precision and recall


def default_extractor(channels: int) -> str:
    """The offline feature network for images with ``channels`` channels."""
    return "digits" if channels == 1 else "cifar10"


def _extractor(opts: EvalOptions, channels: int):
    name = opts.extractor or default_extractor(channels)
    if name not in EXTRACTORS:
        raise UserError(f"unknown extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    if name != "inception" and opts.inception_weights is not None:
        raise UserError("--inception-weights goes with --extractor inception")
    if name == "inception" and opts.evaluator_weights is not None:
        raise UserError("--evaluator-weights goes with --extractor digits or cifar10")
    if name != "inception":
        from .evaluator import classifier_extractor

        return classifier_extractor(name, opts.evaluator_weights)
    from .inception import inception_extractor

    return inception_extractor(opts.inception_weights)


@dataclass(frozen=True)
class RealData:
    """The real images a generator is compared with. A TrainConfig has these fields too."""

    data: str
    data_root: str | None
    image_size: int
    channels: int


def prepare(real: RealData, opts: EvalOptions):
    """The extractor, a loader of the real images and their cache key.

    ``real`` names the dataset and the size the generator makes (a ``RealData``, or a training
    config, which has the same fields); ``opts.data`` and ``opts.data_root`` override its dataset.
    The extractor is built first: a missing network fails before any real work.
    """
    cfg = real
    extractor = _extractor(opts, cfg.channels)
    name = opts.data or cfg.data
    root = opts.data_root if opts.data_root is not None or name != cfg.data else cfg.data_root
    spec = DataSpec(
        name=name,
        root=root,
        split=opts.split,
        channels=cfg.channels,
        image_size=cfg.image_size,
        in_memory=False,
        download=opts.download,
    )  # one pass over the data: stream where it is not in memory anyway
    key = {
        "dataset": name,
        "root": os.path.abspath(root) if root else None,
        "split": opts.split,
        "image_size": cfg.image_size,
        "channels": cfg.channels,
    }
    return extractor, (lambda: load(spec, progress=opts.progress)), key


def real_labels(real: RealData, opts: EvalOptions):
    """A loader of the real images' classes, in the order ``prepare``'s loader serves the images (for FID
    per class of a conditional generator); it returns None for a dataset without labels."""
    name = opts.data or real.data
    root = opts.data_root if opts.data_root is not None or name != real.data else real.data_root
    spec = DataSpec(
        name=name,
        root=root,
        split=opts.split,
        channels=real.channels,
        image_size=real.image_size,
        labels=True,
        download=opts.download,
    )

    def load_labels():
        from ..data import LABELLED

        if name not in LABELLED:
            return None
        try:
            data = load(spec, progress=opts.progress)
        except UserError:  # a folder without class sub-folders: no per-class FID
            return None
        return getattr(data, "labels", None)

    return load_labels


def evaluate_checkpoint(path: str | os.PathLike, opts: EvalOptions, device: torch.device) -> tuple[EvalResult, dict]:
    """Evaluate the generator of a checkpoint or run directory; returns the result and what was compared."""

    check_fid_images(opts.num_images)
    if opts.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {opts.batch_size}")
    path = ckpt.resolve(path)
    state = ckpt.load_training(path)
    saved = ckpt.config_of(state)
    cfg = RealData(saved["data"], saved.get("data_root"), saved["image_size"], saved["channels"])
    extractor, real, key = prepare(cfg, opts)
    name = opts.data or cfg.data

    G = Generator.from_checkpoint(path, device, ema=opts.ema)
    result = evaluate(
        G,
        real,
        extractor,
        num_images=opts.num_images,
        seed=opts.seed,
        batch_size=opts.batch_size,
        cache_key=key,
        cache_dir=opts.cache_dir,
        progress=opts.progress,
        precision_recall_k=opts.precision_recall_k,
        real_labels=real_labels(cfg, opts) if G.num_classes else None,
    )
    info = {
        "checkpoint": str(path),
        "step": ckpt.step_of(state),
        "generator": "ema" if opts.ema and ckpt.has_ema(state) else "raw",
        "data": name,
        "split": opts.split,
        "image_size": cfg.image_size,
        "channels": cfg.channels,
        "seed": opts.seed,
    }
    return result, info


def _count(n: int) -> str:
    """10000 -> "10k": the sample count a figure was measured on, short enough for a label."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def format_table(result: EvalResult, info: dict) -> str:
    """The result for people: what was compared, then one metric per line."""
    rows = [
        *(
            [("checkpoint", f"{info['checkpoint']} (step {info['step']}, {info['generator']} generator)")]
            if "checkpoint" in info
            else []
        ),
        (
            "real data",
            f"{info['data']} {info['split']}, {result.num_real_images:,} images, "
            f"{info['image_size']}x{info['image_size']}x{info['channels']}",
        ),
        (
            "generated",
            f"{result.num_images:,} images, seed {info['seed']}"
            if "seed" in info
            else f"{result.num_images:,} images from {info['images']}",
        ),
        (
            "extractor",
            f"{result.extractor} (every figure below is in its features: compare only with "
            f"{result.extractor} figures of as many images)",
        ),
        (f"FID ({result.extractor}, {_count(result.num_images)})", f"{result.fid:.3f}"),
        (f"KID ({result.extractor}, {_count(result.num_images)})", f"{result.kid_mean:.5f} ± {result.kid_std:.5f}"),
    ]
    if result.precision is not None:
        rows.append(("precision", f"{result.precision:.3f}"))
        rows.append(("recall", f"{result.recall:.3f}"))
    if result.is_mean is not None:
        rows.append(("IS", f"{result.is_mean:.3f} ± {result.is_std:.3f}"))
    if result.class_shares is not None:
        uniform = 1 / len(result.class_shares)
        rows.append(("smallest class", f"{result.min_class} at {result.min_class_share:.1%} (uniform: {uniform:.1%})"))
        rows.append(("class shares", "  ".join(f"{k}: {v:.1%}" for k, v in result.class_shares.items())))
    if result.conditional_accuracy is not None:
        rows.append(
            (
                "conditional accuracy",
                f"{result.conditional_accuracy:.2%} (the class asked for, by the extractor's classifier)",
            )
        )
    if result.class_fid:
        rows.append(("FID per class", "  ".join(f"{k}: {v:.2f}" for k, v in result.class_fid.items())))
    rows += [(name, f"missing: {reason}") for name, reason in result.missing.items()]
    rows.append(("time", f"{result.seconds:.1f} s"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
