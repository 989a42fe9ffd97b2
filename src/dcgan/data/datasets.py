"""The dataset types every source ends up as: image folders read per file, unlabelled views, and
``InMemoryImages``, one decoded uint8 tensor, which ``decode_all`` makes from any of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .transforms import pil_transform

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


class ImageFolder(Dataset):
    """Every image file below a folder, recursively; each item is uint8 [C, S, S].

    Unreadable files are skipped with a count (``skipped``) rather than failing
    the whole run: one broken JPEG in 200k should not stop training. torchvision's
    ImageFolder is not used because it requires one sub-folder per class; with
    ``labelled`` this one asks for the same (the class of a file is its first
    sub-folder, classes in sorted order) and its items are (image, label).
    """

    def __init__(self, root: str, channels: int, image_size: int, *, labelled: bool = False) -> None:
        path = Path(root)
        if not path.is_dir():
            raise UserError(f"image folder not found: {root}")
        self.files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.files:
            raise UserError(f"no images in {root} (looked recursively for {', '.join(IMAGE_EXTENSIONS)})")
        self.transform = pil_transform(channels, image_size)
        self.skipped: list[str] = []
        self.classes: tuple[str, ...] = ()
        self.targets: list[int] | None = None
        if labelled:
            top = [p.relative_to(path).parts for p in self.files]
            loose = [p for p, parts in zip(self.files, top) if len(parts) == 1]
            if loose:
                raise UserError(
                    f"--conditional with --data folder needs one sub-folder per class; {len(loose)} image(s) "
                    f"lie directly in {root}, e.g. {loose[0].name}"
                )
            self.classes = tuple(sorted({parts[0] for parts in top}))
            if len(self.classes) < 2:
                raise UserError(f"--conditional needs at least 2 classes; {root} has one sub-folder, {self.classes[0]}")
            index = {name: i for i, name in enumerate(self.classes)}
            self.targets = [index[parts[0]] for parts in top]

    def labels_of_readable(self) -> torch.Tensor:
        """The labels of the files that decoded, in order (decode_all drops the unreadable ones)."""
        skipped = set(self.skipped)
        return torch.tensor([t for f, t in zip(self.files, self.targets) if str(f) not in skipped], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.files[index]) as img:
                return self.transform(img)
        # DecompressionBombError: a header claiming a huge image (a hostile or broken file) is
        # skipped like any unreadable file rather than stopping the run or filling memory
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError):
            self.skipped.append(str(self.files[index]))
            return None

    def __getitem__(self, index: int):
        # streaming path: a bad file is replaced by its next readable neighbour (with its label)
        for offset in range(len(self.files)):
            image = self.load((index + offset) % len(self.files))
            if image is not None:
                return image if self.targets is None else (image, self.targets[(index + offset) % len(self.files)])
        raise UserError(f"no readable images in {self.files[0].parent}")


class InMemoryImages:
    """All images as one uint8 tensor [N, C, S, S] (optionally on the training device)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> InMemoryImages:
        return InMemoryImages(self.images.to(device), None if self.labels is None else self.labels.to(device))


class _TensorImages(Dataset):
    """Decoded uint8 images served one by one, as the streaming path serves files (with labels: pairs)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index] if self.labels is None else (self.images[index], self.labels[index])


class Unlabelled(Dataset):
    """Drop the label from (image, label) datasets."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def decode_all(dataset: Dataset, *, progress: bool = True) -> InMemoryImages:
    """Decode every image once into one uint8 tensor, with a progress bar."""
    from tqdm import tqdm

    folder = dataset if isinstance(dataset, ImageFolder) else None
    loader = DataLoader(
        _Decode(dataset),
        batch_size=256,
        num_workers=min(4, os.cpu_count() or 1),
        collate_fn=_as_list,
    )
    chunks, skipped = [], []
    # a DataLoader draws its workers' base seed from the global RNG: decoding must not, so that a run
    # initialises the same weights whether its images were decoded now or read from the decoded cache
    with torch.random.fork_rng(devices=[]):
        for batch in tqdm(loader, desc="decoding images", unit="batch", disable=not progress, leave=False):
            images = [x for x in batch if isinstance(x, torch.Tensor)]
            skipped += [x for x in batch if isinstance(x, str)]
            if images:
                chunks.append(torch.stack(images))
    if not chunks:
        raise UserError(f"none of the {len(dataset)} image files could be read")
    if skipped:
        print(f"warning: skipped {len(skipped)} unreadable image file(s), e.g. {skipped[0]}")
    if folder is not None:
        folder.skipped = skipped
    labels = folder.labels_of_readable() if folder is not None and folder.targets is not None else None
    return InMemoryImages(torch.cat(chunks), labels)


def _as_list(items: list) -> list:
    """Keep decode_all's items as a list (images and paths of unreadable files).

    A module-level function, not a lambda: DataLoader workers started with ``spawn``
    (macOS, Windows) pickle the collate function.
    """
    return list(items)


class _Decode(Dataset):
    """Items for decode_all: the image, or the path of an unreadable file."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if isinstance(self.dataset, ImageFolder):
            image = self.dataset.load(index)
            return str(self.dataset.files[index]) if image is None else image
        item = self.dataset[index]
        return item[0] if isinstance(item, tuple) else item
