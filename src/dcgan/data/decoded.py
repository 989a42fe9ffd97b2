"""A disk cache of decoded images for file sources (image folders, CelebA, LSUN).

Decoding is the slow part of starting a run on files: every JPEG or PNG goes through PIL and a
resize (about 15 s for 20k small images on two cores, minutes for CelebA's 200k). The decoded
uint8 array is stored once under ``cache_home()/decoded`` and memory-mapped by later runs. The key
holds every file's path, size and modification time, the count, the image size and the channels,
so an added, removed or rewritten file, or another size, decodes afresh. The metadata file is
written after the array: a run killed mid-write leaves no entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..cache import cache_home
from ..fileio import atomic_path, write_text_atomic
from .datasets import ImageFolder, InMemoryImages, Unlabelled, decode_all
from .spec import DataSpec

FORMAT = 1


def source_files(dataset: Dataset) -> list[Path] | None:
    """The files an image source decodes from; None where it has no fixed file list."""
    if isinstance(dataset, ImageFolder):
        return list(dataset.files)
    if isinstance(dataset, Subset):  # --max-images over CelebA or LSUN: the count is in the key
        dataset = dataset.dataset
    inner = dataset.dataset if isinstance(dataset, Unlabelled) else None
    if inner is None:
        return None
    if hasattr(inner, "filename") and hasattr(inner, "base_folder"):  # torchvision CelebA
        folder = Path(inner.root) / inner.base_folder / "img_align_celeba"
        return [folder / name for name in inner.filename]
    if hasattr(inner, "dbs"):  # torchvision LSUN: one lmdb folder per class
        return sorted(p for db in inner.dbs for p in Path(db.root).glob("*.mdb"))
    return None


def cache_key(files: list[Path], dataset: Dataset, spec: DataSpec) -> dict:
    """What the decoded array depends on; raises OSError when a file cannot be looked at."""
    entries = []
    for path in files:
        st = path.stat()
        entries.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
    return {
        "format": FORMAT,
        "dataset": spec.name,
        "count": len(dataset),
        "image_size": spec.image_size,
        "channels": spec.channels,
        "files": entries,
    }


def decode_cached(dataset: Dataset, spec: DataSpec, *, progress: bool = True) -> InMemoryImages:
    """``decode_all``, from the cache when an entry for exactly these files exists, else stored there."""
    files = source_files(dataset)
    if files is None:
        return decode_all(dataset, progress=progress)
    try:
        key = cache_key(files, dataset, spec)
    except OSError:  # a file vanished or cannot be looked at: decode, which reports it
        return decode_all(dataset, progress=progress)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    stem = cache_home() / "decoded" / f"{spec.name}-{spec.image_size}px-{spec.channels}ch-{digest[:16]}"
    array_path, meta_path = stem.with_suffix(".u8"), stem.with_suffix(".json")

    images = _read(array_path, meta_path, digest)
    if images is not None:
        tensor, skipped = images
        if skipped:
            print(f"warning: skipped {len(skipped)} unreadable image file(s), e.g. {skipped[0]}")
        labels = None
        if isinstance(dataset, ImageFolder):
            dataset.skipped = skipped
            labels = dataset.labels_of_readable() if dataset.targets is not None else None
        return InMemoryImages(tensor, labels)

    data = decode_all(dataset, progress=progress)
    skipped = dataset.skipped if isinstance(dataset, ImageFolder) else []
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(array_path) as tmp:
            data.images.numpy().tofile(tmp)
        meta = {
            "digest": digest,
            "shape": list(data.images.shape),
            "skipped": skipped,
            "root": spec.root,
            "count": key["count"],
        }
        write_text_atomic(meta_path, json.dumps(meta) + "\n")
    except OSError as e:  # the cache only saves time; training goes on without it
        print(f"warning: could not store decoded images in {stem.parent} ({e.strerror or e})", file=sys.stderr)
    return data


def _read(array_path: Path, meta_path: Path, digest: str) -> tuple[torch.Tensor, list[str]] | None:
    try:
        meta = json.loads(meta_path.read_text())
        shape = tuple(int(n) for n in meta["shape"])
        if meta["digest"] != digest or array_path.stat().st_size != int(np.prod(shape)):
            return None
        # copy-on-write: pages are read from disk as batches need them, and the array is writable
        array = np.memmap(array_path, dtype=np.uint8, mode="c", shape=shape)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return torch.from_numpy(array), list(meta.get("skipped", []))
