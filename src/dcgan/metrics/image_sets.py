"""Evaluating images from anywhere: a folder of images or an ``.npz`` of samples, and reference statistics.

``dcgan eval`` scores a run by generating from it; the same metrics apply to
images another tool made. ``dcgan stats`` writes the mean and covariance of a
set's features in pytorch-fid's format (an ``.npz`` with float64 ``mu`` and
``sigma``, the covariance with N-1), so a reference set can be shared and compared
with other tools (with ``--extractor inception`` the features are the standard
FID Inception-v3's, as in pytorch-fid and clean-fid).
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..data import IMAGE_EXTENSIONS, ImageFolder, decode_all
from ..errors import UserError
from ..models import Generator

GREY_MODES = ("L", "1", "I", "I;16", "I;16B", "I;16L")  # read as one channel (16-bit scaled to 8)
NPZ_IMAGE_KEYS = ("images", "arr_0", "x")  # dcgan sample writes "images"; np.savez(path, array) writes "arr_0"


def is_image_set(path: str | os.PathLike) -> bool:
    """A .npz, or a folder that is not a run directory."""
    path = Path(path)
    return path.suffix.lower() == ".npz" or (path.is_dir() and not (path / "checkpoints").is_dir())


def _first_image(folder: Path) -> Path:
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            return path
    raise UserError(f"no images in {folder} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")


def load_image_set(path: str | os.PathLike, *, progress: bool = True, strict: bool = False) -> torch.Tensor:
    """uint8 images [N, C, H, W] from a folder (size and mode of its first image) or an .npz [N, H, W(, C)].

    ``strict`` (images to score): every image of a folder has the first one's size and mode, and the
    images are square of a size a generator makes (``check_image_set``); nothing is resized in secret.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"not found: {path}")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path) as archive:
                key = next((k for k in NPZ_IMAGE_KEYS if k in archive.files), None)
                if key is None:
                    raise UserError(
                        f"{path} has no image array; expected one of {', '.join(NPZ_IMAGE_KEYS)} "
                        f"(it has {', '.join(archive.files) or 'nothing'})"
                    )
                array = archive[key]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise UserError(f"{path} is not a readable .npz: {str(e).splitlines()[0][:200]}") from None
        if array.dtype != np.uint8 or array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3)):
            raise UserError(
                f"{path}: expected uint8 images [N, H, W] or [N, H, W, 1 or 3], got {array.dtype} {list(array.shape)}"
            )
        images = torch.from_numpy(array if array.ndim == 4 else array[..., None]).permute(0, 3, 1, 2)
        return check_image_set(images.contiguous(), path) if strict else images.contiguous()
    if not path.is_dir():
        raise UserError(f"{path} is neither a folder of images nor an .npz")
    from PIL import Image

    first = _first_image(path)
    with Image.open(first) as image:
        channels, size = (1 if image.mode in GREY_MODES else 3), image.size
    for file in sorted(p for p in path.rglob("*") if strict if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
        try:
            with Image.open(file) as image:  # reads the header only
                other = (1 if image.mode in GREY_MODES else 3), image.size
        except (OSError, ValueError, SyntaxError):
            continue  # unreadable files are skipped (and counted) by the decoder
        if other != (channels, size):
            raise UserError(
                f"{path} mixes image shapes: {first.name} is {size[0]}x{size[1]} with {channels} "
                f"channel(s), {file.relative_to(path)} is {other[1][0]}x{other[1][1]} with {other[0]}; "
                "an image set is compared as it is, not resized: use one size and mode"
            )
    images = decode_all(ImageFolder(str(path), channels, min(size)), progress=progress).images
    return check_image_set(images, path) if strict else images


def check_image_set(images: torch.Tensor, path: str | os.PathLike) -> torch.Tensor:
    """Square images of a size a generator makes: samples of another size would be compared with real
    images shrunk or blown up to match, a score of something else."""
    from ..models import SUPPORTED_IMAGE_SIZES

    h, w = images.shape[-2:]
    if h != w or h not in SUPPORTED_IMAGE_SIZES:
        raise UserError(
            f"{path} holds {w}x{h} images; an image set is compared as it is, not resized: give "
            f"square images of {', '.join(map(str, SUPPORTED_IMAGE_SIZES))} pixels"
        )
    return images


def evaluate_image_set(path: str | os.PathLike, opts, device: torch.device):
    """``dcgan eval FOLDER_OR_NPZ``: the metrics of these images against ``opts.data``; (result, info)."""
    from ..config import TrainConfig
    from .evaluate import extract, real_features, score
    from .report import prepare

    if opts.data is None:
        raise UserError(
            "evaluating a folder or .npz of images needs --data (and --data-root): the real images to compare with"
        )
    start = time.perf_counter()
    images = load_image_set(path, progress=opts.progress, strict=True)
    cfg = TrainConfig(data=opts.data, data_root=opts.data_root, channels=images.shape[1], image_size=images.shape[-1])
    extractor, real, key = prepare(cfg, opts)
    extractor = extractor.to(device).eval()
    fake, logits = extract(
        iter(images.split(opts.batch_size)), extractor, total=len(images), desc="images", progress=opts.progress
    )
    real_f, _ = real_features(
        real, extractor, key=key, cache_dir=opts.cache_dir, batch_size=opts.batch_size, progress=opts.progress
    )
    result = score(
        real_f,
        fake,
        logits,
        extractor,
        device=device,
        seed=opts.seed,
        precision_recall_k=opts.precision_recall_k,
        start=start,
    )
    info = {
        "images": str(path),
        "data": opts.data,
        "split": opts.split,
        "image_size": cfg.image_size,
        "channels": cfg.channels,
    }
    return result, info


# --------------------------------------------------------------------------- reference statistics


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mu [F], sigma [F, F]) in float64, computed as pytorch-fid does (``np.cov``, rowvar=False)."""
    array = features.double().cpu().numpy()
    return array.mean(axis=0), np.cov(array, rowvar=False)


def write_stats(mu: np.ndarray, sigma: np.ndarray, out: str | os.PathLike, meta: dict) -> Path:
    from ..explore import check_output_file
    from ..outputs import writing

    out = Path(out)
    check_output_file(out, (".npz",))
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(
            f"the statistics of {meta.get('source', 'these images')} are not finite (NaN or infinite); "
            f"not writing {out}"
        )
    with writing(out, "the statistics") as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
            np.savez_compressed(f, mu=mu, sigma=sigma, **{f"dcgan_{k}": np.asarray(str(v)) for k, v in meta.items()})
    return out


def read_stats(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    try:
        with np.load(path) as archive:
            mu, sigma = archive["mu"], archive["sigma"]
    except KeyError:
        raise UserError(f"{path} has no mu and sigma: not a statistics file (make one with dcgan stats)") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path} is not a readable statistics file: {str(e).splitlines()[0][:200]}") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise UserError(f"{path}: mu {list(mu.shape)} and sigma {list(sigma.shape)} do not fit together")
    return mu.astype(np.float64), sigma.astype(np.float64)


def frechet_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """FID from two (mu, sigma) pairs: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) is the sum of the square roots of S1 S2's eigenvalues (real and
    non-negative for covariance matrices, up to rounding); written here because
    torchmetrics only computes FID from features, not from stored statistics.
    """
    if mu1.shape != mu2.shape:
        raise UserError(f"the statistics have {len(mu1)} and {len(mu2)} features: different extractors?")
    eigenvalues = torch.linalg.eigvals(torch.from_numpy(sigma1) @ torch.from_numpy(sigma2))
    trace_sqrt = eigenvalues.sqrt().real.sum().item()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def stats_features(source: str, *, opts, image_size: int | None, channels: int | None, device: torch.device):
    """Features of ``source``: a folder or .npz of images, or a dataset name (with ``opts.data_root``)."""
    from ..config import TrainConfig
    from .evaluate import extract, real_features
    from .report import prepare

    if is_image_set(source) and Path(source).exists():
        images = load_image_set(source, progress=opts.progress)
        extractor, _, _ = prepare(TrainConfig(channels=images.shape[1], image_size=images.shape[-1]), opts)
        extractor = extractor.to(device).eval()
        features, _ = extract(
            iter(images.split(opts.batch_size)), extractor, total=len(images), desc="images", progress=opts.progress
        )
        return features, len(images), extractor.name
    cfg = TrainConfig(data=source, data_root=opts.data_root, image_size=image_size or 28, channels=channels or 1)
    from dataclasses import replace

    extractor, real, key = prepare(cfg, replace(opts, data=source))
    extractor = extractor.to(device).eval()
    features, _ = real_features(
        real, extractor, key=key, cache_dir=opts.cache_dir, batch_size=opts.batch_size, progress=opts.progress
    )
    return features, len(features), extractor.name


def fid_against_statistics(source: str, ref: str | os.PathLike, *, opts, device: torch.device) -> tuple[float, dict]:
    """``dcgan eval SOURCE --ref ref.npz``: FID of a run's samples (or a folder/.npz of images) against stored stats."""
    from ..config import TrainConfig
    from ..sample import generate
    from .evaluate import extract
    from .report import prepare

    mu_ref, sigma_ref = read_stats(ref)
    if not (np.isfinite(mu_ref).all() and np.isfinite(sigma_ref).all()):
        raise UserError(
            f"{ref} holds NaN or infinite statistics: no FID can be computed against it; make it again with dcgan stats"
        )
    if is_image_set(source):
        images = load_image_set(source, progress=opts.progress, strict=True)
    else:
        G = Generator.from_checkpoint(source, device, ema=opts.ema)
        images = generate(G, opts.num_images, seed=opts.seed, batch_size=opts.batch_size)
    extractor, _, _ = prepare(TrainConfig(channels=images.shape[1], image_size=images.shape[-1]), opts)
    extractor = extractor.to(device).eval()
    features, _ = extract(
        iter(images.split(opts.batch_size)), extractor, total=len(images), desc="images", progress=opts.progress
    )
    mu, sigma = feature_statistics(features)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"the features of {source} are not finite (NaN or infinite): no FID can be computed")
    fid = frechet_from_statistics(mu, sigma, mu_ref, sigma_ref)
    if not np.isfinite(fid):
        raise UserError(f"FID against {ref} is not finite: the statistics are degenerate (constant images?)")
    return fid, {"source": str(source), "reference": str(ref), "num_images": len(images), "extractor": extractor.name}
