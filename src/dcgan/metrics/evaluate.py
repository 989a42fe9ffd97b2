"""FID, KID, an Inception-Score-style score and class coverage of a generator against real data.

Every image goes through the feature extractor once; its features and logits
then feed torchmetrics' ``FrechetInceptionDistance``, ``KernelInceptionDistance``
and ``InceptionScore`` through a pass-through feature module (torchmetrics
accepts any ``nn.Module`` as the feature network and reads its ``num_features``
rather than probing it with a 3x299x299 dummy image). Handing each metric the
extractor itself would run the network three times per image, and cached real
features could not enter at all.

The real data's features are cached per (dataset, root, split, image size,
channels, extractor) and written atomically (temporary file, ``os.replace``).
The cache holds the features themselves, not their mean and covariance: KID
needs them (it compares random subsets), and FID's state (the feature sum and
``X^T X``) follows from them exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..cache import cache_home, content_digest
from ..data import InMemoryImages
from ..errors import UserError
from ..fileio import load_weights_only
from ..outputs import write_cache
from ..runtime import get_dist
from ..sample import generated_batches

RealImages = torch.Tensor | InMemoryImages | Dataset


def default_cache_dir() -> Path:
    return cache_home() / "stats"


class Precomputed(nn.Module):
    """The identity on feature vectors, with the feature count that torchmetrics asks for."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


# --------------------------------------------------------------------------- the metrics


def _metrics_device(device: torch.device) -> torch.device:
    return device if device.type == "cuda" else torch.device("cpu")  # MPS has no float64


# The metrics below run on rank 0 alone with every rank's features gathered
# (``_gather_to_rank0``), so torchmetrics' own cross-rank sync is off.


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two sets of feature vectors [N, F] (torchmetrics, in float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=Precomputed(real.shape[1]), sync_on_compute=False).to(real.device)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return fid.compute().item()


def kernel_distance(
    real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over random subsets) between two sets of feature vectors; reproducible for a seed."""
    from torchmetrics.image.kid import KernelInceptionDistance

    subset_size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(
            feature=Precomputed(real.shape[1]), subsets=subsets, subset_size=subset_size, sync_on_compute=False
        )
    kid = kid.to(real.device)
    kid.update(real.float(), real=True)
    kid.update(fake.float(), real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws the subsets from the global RNG
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return mean.item(), std.item()


def inception_score(logits: torch.Tensor, *, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """exp(E KL(p(y|x) || p(y))) over ``splits`` random splits (mean, std); at most the class count."""
    from torchmetrics.image.inception import InceptionScore

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        score = InceptionScore(feature=Precomputed(logits.shape[1]), splits=splits, sync_on_compute=False).to(
            logits.device
        )
    score.update(logits.double())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = score.compute()
    return mean.item(), std.item()


def class_coverage(logits: torch.Tensor, labels: tuple[str, ...]) -> dict[str, float]:
    """Share of the images predicted as each class; a collapsed generator leaves classes near 0."""
    counts = torch.bincount(logits.argmax(1).cpu(), minlength=len(labels))
    return {label: count / len(logits) for label, count in zip(labels, counts.tolist())}


# --------------------------------------------------------------------------- features


def _batches(real: RealImages, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(real, InMemoryImages):
        real = real.images
    if isinstance(real, torch.Tensor):
        yield from real.split(batch_size)
        return
    yield from DataLoader(real, batch_size=batch_size, num_workers=min(4, os.cpu_count() or 1))


@torch.no_grad()
def extract(
    batches: Iterator[torch.Tensor],
    extractor: nn.Module,
    *,
    total: int,
    desc: str,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features [N, F] (and logits [N, K] where the extractor has them) of uint8 batches, on the CPU."""
    from tqdm import tqdm

    device = next(extractor.parameters()).device
    features, logits = [], []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for images in batches:
            f, lg = extractor.features_and_logits(images.to(device))
            features.append(f.cpu())
            if lg is not None:
                logits.append(lg.cpu())
            bar.update(len(images))
    return torch.cat(features), (torch.cat(logits) if logits else None)


def cache_path(cache_dir: str | os.PathLike, key: dict) -> Path:
    """``<dataset>-<split>-<size>px-<extractor>-<hash of the whole key>.pt``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    parts = [str(key.get(k)) for k in ("dataset", "split") if key.get(k) is not None]
    if key.get("image_size") is not None:
        parts.append(f"{key['image_size']}px")
    parts.append(str(key.get("extractor", "features")).split("-")[0])
    return Path(cache_dir) / f"{'-'.join(parts)}-{digest}.pt"


def _read_cache(path: Path, key: dict, num_features: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        state = load_weights_only(path, "statistics cache")
    except UserError:  # a broken cache is recomputed, not an error
        state = None
    valid = (
        isinstance(state, dict)
        and state.get("key") == key
        and isinstance(state.get("features"), torch.Tensor)
        and state["features"].ndim == 2
        and state["features"].shape[1] == num_features
        and bool(torch.isfinite(state["features"]).all())
    )
    if not valid:
        print(f"warning: ignoring unreadable or mismatched statistics cache {path}; recomputing", file=sys.stderr)
        return None
    return state["features"]


def _write_cache(path: Path, key: dict, features: torch.Tensor) -> None:
    # a full disk (or a bad --cache-dir) costs the cache, not the result
    write_cache(
        path, "the statistics cache", lambda tmp: torch.save({"key": key, "features": features.contiguous()}, tmp)
    )


def real_features(
    real: RealImages | Callable[[], RealImages],
    extractor: nn.Module,
    *,
    key: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 250,
    progress: bool = True,
) -> tuple[torch.Tensor, Path | None]:
    """Features of the real images, read from the cache when ``key`` is given and a file exists.

    ``real`` may be a function returning the images, so that a cache hit never
    loads the dataset. ``key`` describes the images (dataset, root, split,
    size, ...); the extractor's own ``cache_key`` is added to it. Returns the
    features and the cache file (None without a key).
    """
    path = None
    if key is not None:
        key = {**key, "extractor": extractor.cache_key}
        if key.get("root"):  # keyed by what the folder holds, not its name: replaced images are seen
            key["content"] = content_digest(key["root"])
        path = cache_path(cache_dir if cache_dir is not None else default_cache_dir(), key)
        cached = _read_cache(path, key, extractor.num_features)
        if cached is not None:
            return cached, path
    images = real() if callable(real) else real
    features, _ = extract(
        _batches(images, batch_size), extractor, total=len(images), desc="real images", progress=progress
    )
    if path is not None:
        _write_cache(path, key, features)
    return features, path


def _shard(num_images: int, batch_size: int, rank: int, world_size: int) -> list[torch.Tensor]:
    """Per batch, the indices of the images this rank generates: batch positions rank::world_size."""
    return [
        torch.arange(start, min(start + batch_size, num_images))[rank::world_size]
        for start in range(0, num_images, batch_size)
    ]


# --------------------------------------------------------------------------- the evaluation


@dataclass
class EvalResult:
    fid: float
    kid_mean: float
    kid_std: float
    is_mean: float | None  # None where the extractor has no classifier
    is_std: float | None
    class_shares: dict[str, float] | None  # None where its classes are not the data's (Inception)
    min_class: str | None
    min_class_share: float | None
    num_images: int
    num_real_images: int
    extractor: str
    seconds: float
    precision: float | None = None  # k-NN precision and recall (precision_recall.py); None where not asked for
    recall: float | None = None
    # class-conditional generators (every class equally often, so ``fid`` is over a uniform class mixture):
    # the share of images the extractor's classifier puts in the class asked for, and FID within each class
    conditional_accuracy: float | None = None
    class_fid: dict[str, float] | None = None
    # metric -> why it could not be computed: a None above is never left to be taken for a figure
    missing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _gather_to_rank0(parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]):
    """Every rank's (indices, features, logits), on rank 0, as (features, logits) in image order."""
    import torch.distributed as dist

    gathered = [None] * get_dist().world_size if get_dist().rank == 0 else None
    dist.gather_object(parts, gathered, dst=0)
    if gathered is None:
        return None, None
    order = torch.cat([g[0] for g in gathered]).argsort()
    features = torch.cat([g[1] for g in gathered])[order]
    logits = None if gathered[0][2] is None else torch.cat([g[2] for g in gathered])[order]
    return features, logits


def check_fid_images(num_images: int, flag: str = "--num-images") -> None:
    """FID needs a covariance: at least 2 generated images (the one rule for every command)."""
    if num_images < 2:
        raise UserError(f"{flag} must be at least 2 for FID, got {num_images}")


def evaluate(
    generator: nn.Module,
    real_images_u8: RealImages | Callable[[], RealImages],
    extractor: nn.Module,
    *,
    num_images: int = 10_000,
    seed: int = 0,
    batch_size: int = 250,
    cache_key: dict | None = None,
    cache_dir: str | os.PathLike | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    progress: bool = True,
    precision_recall_k: int | None = None,
    real_labels: torch.Tensor | Callable[[], torch.Tensor | None] | None = None,
) -> EvalResult | None:
    """Generate ``num_images`` images and compare them with the real ones through ``extractor``.

    ``generator`` is used as given (``Generator.from_checkpoint`` returns it in
    eval mode with recalibrated batch norm); the extractor runs on its device.
    With ``cache_key`` the real features are cached (see ``real_features``).
    ``precision_recall_k`` adds k-NN precision and recall (``precision_recall.py``).
    A class-conditional generator draws every class equally often (``sample.class_labels``);
    it is also scored for conditional accuracy and, given the real images' labels, FID per class.
    """
    check_fid_images(num_images)
    start = time.perf_counter()
    device = next(generator.parameters()).device
    extractor = extractor.to(device).eval()
    rank, world_size = get_dist().rank, get_dist().world_size

    # under torchrun every rank generates and extracts its share; rank 0 gathers and scores
    indices = torch.cat(_shard(num_images, batch_size, rank, world_size))
    fake, logits = extract(
        generated_batches(generator, num_images, seed=seed, batch_size=batch_size, rank=rank, world_size=world_size),
        extractor,
        total=len(indices),
        desc="generating",
        progress=progress and rank == 0,
    )
    if world_size > 1:
        fake, logits = _gather_to_rank0((indices, fake, logits))
        if rank != 0:
            return None
    real, _ = real_features(
        real_images_u8, extractor, key=cache_key, cache_dir=cache_dir, batch_size=batch_size, progress=progress
    )
    result = score(
        real,
        fake,
        logits,
        extractor,
        device=device,
        seed=seed,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        precision_recall_k=precision_recall_k,
        start=start,
    )
    if getattr(generator, "num_classes", 0):
        from ..sample import class_labels

        labels = real_labels() if callable(real_labels) else real_labels
        result.conditional_accuracy, result.class_fid = conditional_scores(
            generator, class_labels(generator, 0, num_images), fake, logits, extractor, real, labels
        )
        if result.conditional_accuracy is None:
            result.missing["conditional accuracy"] = (
                f"the {extractor.name} extractor's classes do not include the generator's "
                f"({', '.join(getattr(generator, 'class_names', ()) or ()) or 'unnamed'})"
            )
        if result.class_fid is None:
            result.missing["FID per class"] = "the real images' labels are not known"
        result.seconds = time.perf_counter() - start
    return result


def conditional_scores(
    generator: nn.Module,
    fake_labels: torch.Tensor,
    fake: torch.Tensor,
    logits: torch.Tensor | None,
    extractor: nn.Module,
    real: torch.Tensor,
    real_labels: torch.Tensor | None,
) -> tuple[float | None, dict[str, float] | None]:
    """Conditional accuracy (where the extractor's classes name the generator's) and FID per class
    (where the real labels are known and a class has at least 2 images on each side)."""
    names = list(getattr(generator, "class_names", ()) or map(str, range(generator.num_classes)))
    accuracy = None
    known = list(getattr(extractor, "labels", None) or ())
    if logits is not None and known and all(n in known for n in names):
        wanted = torch.tensor([known.index(n) for n in names])[fake_labels]
        accuracy = (logits.argmax(1).cpu() == wanted).float().mean().item()
    per_class = None
    if real_labels is not None and len(real_labels) == len(real):
        per_class = {}
        for k, name in enumerate(names):
            r, f = real[real_labels.cpu() == k], fake[fake_labels == k]
            if len(r) >= 2 and len(f) >= 2:
                per_class[name] = frechet_distance(r.to(_metrics_device(real.device)), f.to(r.device))
    return accuracy, per_class


def score(
    real: torch.Tensor,
    fake: torch.Tensor,
    logits: torch.Tensor | None,
    extractor: nn.Module,
    *,
    device: torch.device | None = None,
    seed: int = 0,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    precision_recall_k: int | None = None,
    start: float | None = None,
) -> EvalResult:
    """Every metric from real and generated features (and the generated images' logits, where there are any)."""
    start = time.perf_counter() if start is None else start
    if len(real) < 2:
        raise UserError(f"the real data has {len(real)} image(s); FID needs at least 2")
    if len(fake) < 2:
        raise UserError(f"FID needs at least 2 generated images, got {len(fake)}")
    for name, features in (("real", real), ("generated", fake)):
        if not torch.isfinite(features).all():
            raise UserError(
                f"the {name} images' features are not finite (NaN or infinite): no metric can be "
                "computed from them; a diverged generator or a broken feature network?"
            )
    metrics_device = _metrics_device(device or torch.device("cpu"))
    real, fake = real.to(metrics_device), fake.to(metrics_device)
    fid = frechet_distance(real, fake)
    kid_mean, kid_std = kernel_distance(real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    is_mean = is_std = shares = min_class = min_share = None
    missing = {}
    if logits is None:
        missing["IS"] = missing["class shares"] = f"the {extractor.name} extractor has no classifier"
    elif not getattr(extractor, "labels", None):
        missing["class shares"] = f"the {extractor.name} extractor's classes are not named"
    if logits is not None:
        is_mean, is_std = inception_score(logits.to(metrics_device), seed=seed)
        if getattr(extractor, "labels", None):
            shares = class_coverage(logits, extractor.labels)
            min_class = min(shares, key=shares.get)
            min_share = shares[min_class]
    precision = recall = None
    if precision_recall_k is not None and min(len(real), len(fake)) <= precision_recall_k:
        raise UserError(
            f"--k {precision_recall_k} needs more than {precision_recall_k} images in each set, got "
            f"{len(real)} real and {len(fake)} generated: lower --k, or --k 0 to skip precision "
            "and recall"
        )
    if precision_recall_k is not None:
        from .precision_recall import precision_recall

        pr = precision_recall(real, fake, k=precision_recall_k, seed=seed)
        precision, recall = pr.precision, pr.recall
    else:
        missing["precision"] = missing["recall"] = "skipped (--k 0)"
    return EvalResult(
        fid=fid,
        kid_mean=kid_mean,
        kid_std=kid_std,
        is_mean=is_mean,
        is_std=is_std,
        class_shares=shares,
        min_class=min_class,
        min_class_share=min_share,
        num_images=len(fake),
        num_real_images=len(real),
        extractor=extractor.name,
        seconds=time.perf_counter() - start,
        precision=precision,
        recall=recall,
        missing=missing,
    )
