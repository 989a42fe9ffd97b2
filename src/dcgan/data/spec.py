"""What a run asks of its data: the dataset, where it lives, the split, size and channels."""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("mnist-5k", "mnist", "fashion-mnist", "cifar10", "celeba", "lsun", "folder", "fake")
DEFAULT_DATASET = "mnist-5k"
LABELLED = ("mnist-5k", "mnist", "fashion-mnist", "cifar10", "folder")  # folder: one sub-folder per class
# (image_size, channels) a named dataset's images come in: what a run trains at unless told otherwise;
# CelebA and LSUN hold photos larger than DCGAN's sizes: its 64x64 RGB (image folders: sources.native_shape)
NATIVE_SHAPES = {
    "mnist-5k": (28, 1),
    "mnist": (28, 1),
    "fashion-mnist": (28, 1),
    "cifar10": (32, 3),
    "celeba": (64, 3),
    "lsun": (64, 3),
}
DCGAN_SHAPE = (64, 3)
# torchvision's class order, which their label files use
CLASS_NAMES = {
    "mnist-5k": tuple("0123456789"),
    "mnist": tuple("0123456789"),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}


@dataclass(frozen=True)
class DataSpec:
    name: str = DEFAULT_DATASET
    root: str | None = None  # where the files are; None: the package's or torchvision's default
    split: str = "train"  # "train" or "test" where a dataset has both
    channels: int = 1
    image_size: int = 28
    download: bool = False  # torchvision datasets download only when asked (--download)
    in_memory: bool | None = None  # None: decide by size (IN_MEMORY_MAX_BYTES)
    max_images: int | None = None  # use only the first N images (quick experiments, tests)
    labels: bool = False  # also serve each image's class (class-conditional training)
