"""The offline evaluators: small CNN classifiers whose features score generated images, their training and weights.

Inception-v3 needs weights that must be downloaded and says little about
28x28 digits. Two classifiers train on a CPU and ship with the package, so
evaluation works offline:

- ``digits`` (``weights/mnist_evaluator.pt``): 28x28 grayscale, trained on MNIST;
- ``cifar10`` (``weights/cifar10_evaluator.pt``): 32x32 RGB, trained on CIFAR-10, the feature
  network for colour images of any size and content (anime faces, photos), resized to 32x32.

Their penultimate features give FID and KID; their class predictions give an
Inception-Score-style score and the class-coverage histogram where mode
collapse shows up. The shipped weights come from

    dcgan evaluator train --data mnist --data-root ../shared/data/mnist --out src/dcgan/weights/mnist_evaluator.pt
    dcgan evaluator train --data cifar10 --data-root ../shared/data/cifar10 --epochs 16 \
        --out src/dcgan/weights/cifar10_evaluator.pt

(docs/evaluation.md records their test accuracy, training time and sanity rows). A figure from
one evaluator is not comparable with a figure from another, so every result names its extractor.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import InMemoryImages, resize_uint8, to_model_range
from ..errors import UserError
from ..fileio import load_weights_only
from ..outputs import writing

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = {"digits": WEIGHTS_DIR / "mnist_evaluator.pt", "cifar10": WEIGHTS_DIR / "cifar10_evaluator.pt"}
SHIPPED_WEIGHTS = SHIPPED["digits"]
FORMAT = "dcgan-evaluator"
VERSION = 1
IMAGE_SIZE = 28  # the digit evaluator's input


def _conv(c_in: int, c_out: int, *, kernel_size: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class _Classifier(nn.Module):
    """A ``body`` of convolutions pooled to ``num_features`` and a linear ``head`` over the classes."""

    arch: str

    def __init__(self, body: nn.Sequential, *, num_classes: int, width: int, num_features: int) -> None:
        super().__init__()
        self.num_classes, self.width, self.num_features = num_classes, width, num_features
        self.body = body
        self.head = nn.Linear(num_features, num_classes)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "width": self.width, "num_features": self.num_features}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitClassifier(_Classifier):
    """28x28 grayscale images in [-1, 1] -> class logits; ``features`` gives the penultimate layer.

    Strided convolutions and a global average pool keep it small (23k
    parameters, a 106 kB file at width 16) and quick on a CPU.
    """

    arch, channels, image_size = "digits", 1, 28

    def __init__(self, *, num_classes: int = 10, width: int = 16, num_features: int = 128) -> None:
        w = width
        body = nn.Sequential(
            *_conv(1, w // 2),  # state size. (w/2) x 28 x 28
            *_conv(w // 2, w, stride=2),  # state size. w x 14 x 14
            *_conv(w, w),  # state size. w x 14 x 14
            *_conv(w, 2 * w, stride=2),  # state size. (2w) x 7 x 7
            *_conv(2 * w, 2 * w),  # state size. (2w) x 7 x 7
            *_conv(2 * w, num_features, kernel_size=1),  # state size. num_features x 7 x 7
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # state size. num_features
        )
        super().__init__(body, num_classes=num_classes, width=width, num_features=num_features)


class ColourClassifier(_Classifier):
    """32x32 RGB images in [-1, 1] -> class logits; ``features`` gives the pooled penultimate layer.

    A VGG-style stack, two 3x3 convolutions per resolution with max pooling between them (pooling
    is fine here: the no-pooling rule is DCGAN's, not its judge's), small enough to train to a
    CIFAR-10 accuracy in the high 80s in about ten CPU minutes (docs/evaluation.md).
    """

    arch, channels, image_size = "colour", 3, 32

    def __init__(self, *, num_classes: int = 10, width: int = 32, num_features: int = 256) -> None:
        w = width
        body = nn.Sequential(
            *_conv(3, w),  # state size. w x 32 x 32
            *_conv(w, 2 * w),
            nn.MaxPool2d(2),  # state size. (2w) x 16 x 16
            *_conv(2 * w, 2 * w),  # state size. (2w) x 16 x 16
            *_conv(2 * w, 4 * w),
            nn.MaxPool2d(2),  # state size. (4w) x 8 x 8
            *_conv(4 * w, 4 * w),  # state size. (4w) x 8 x 8
            *_conv(4 * w, num_features),
            nn.MaxPool2d(2),  # state size. num_features x 4 x 4
            *_conv(num_features, num_features),  # state size. num_features x 4 x 4
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),  # state size. num_features
        )
        super().__init__(body, num_classes=num_classes, width=width, num_features=num_features)

    def config(self) -> dict:
        return {**super().config(), "arch": self.arch}  # digit files predate the field: no arch is digits


ARCHITECTURES = {"digits": DigitClassifier, "colour": ColourClassifier}
Classifier = DigitClassifier | ColourClassifier


def build_classifier(config: dict) -> Classifier:
    """The classifier a weights file's ``config`` describes (files without ``arch`` are digit evaluators)."""
    config = dict(config)
    arch = config.pop("arch", "digits")
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown evaluator architecture {arch!r}; this dcgan knows {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**config)


# --------------------------------------------------------------------------- as a feature extractor


class ClassifierExtractor(nn.Module):
    """uint8 images [N, C, H, W] of any size -> the classifier's features (``forward``) and logits.

    Converts to the classifier's channels and size first (antialiased resize, short side then
    centre crop), so it reads generator output and real data identically whatever their resolution.
    ``name`` is what every figure it produces is reported under: ``digits`` or ``cifar10``.
    """

    def __init__(
        self, classifier: Classifier, *, cache_key: str, labels: tuple[str, ...] | None = None, name: str = "digits"
    ) -> None:
        super().__init__()
        self.name = name
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = classifier.num_features  # torchmetrics reads this instead of probing
        self.num_classes = classifier.num_classes
        self.labels = labels or tuple(str(i) for i in range(classifier.num_classes))
        self.cache_key = cache_key

    def _prepare(self, images_u8: torch.Tensor) -> torch.Tensor:
        if images_u8.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images_u8.dtype}")
        return to_model_range(resize_uint8(images_u8, self.classifier.channels, self.classifier.image_size))

    @torch.no_grad()
    def features_and_logits(self, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.classifier.features(self._prepare(images_u8))
        return features, self.classifier.head(features)

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images_u8)[0]


DigitExtractor = ClassifierExtractor  # the name of earlier releases


def load_evaluator(path: str | os.PathLike | None = None) -> tuple[Classifier, dict]:
    """A trained classifier and its metadata; ``None`` loads the shipped MNIST evaluator."""
    path = Path(path) if path is not None else SHIPPED_WEIGHTS
    if not path.is_file():
        raise UserError(f"evaluator weights not found: {path}")
    state = load_weights_only(path, "evaluator file")
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise UserError(f"{path} is not a dcgan evaluator file (make one with: dcgan evaluator train)")
    model = build_classifier(state["config"])
    model.load_state_dict(state["state_dict"])
    return model.eval(), state.get("meta", {})


def classifier_extractor(name: str = "digits", path: str | os.PathLike | None = None) -> ClassifierExtractor:
    """The shipped evaluator ``name`` (``digits`` or ``cifar10``), or the weights at ``path``, as a feature extractor.

    Weights from ``path`` are reported under their own name (``digits`` for a grayscale evaluator,
    else the dataset it was trained on), never under a shipped one's. The cache key is a hash of the
    weights file, so retrained weights never reuse statistics computed with the old ones.
    """
    if path is None:
        if name not in SHIPPED:
            raise UserError(f"no shipped evaluator {name!r}; choose from {', '.join(SHIPPED)}")
        path = SHIPPED[name]
        if not path.is_file():
            raise UserError(f"the shipped {name} evaluator is missing from this install ({path})")
    path = Path(path)
    classifier, meta = load_evaluator(path)
    if classifier.channels == 1:
        name = "digits"
    else:
        name = str(meta.get("data") or "colour")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    labels = tuple(meta["labels"]) if meta.get("labels") else None
    return ClassifierExtractor(classifier, cache_key=f"{name}-{digest}", labels=labels, name=name)


def digit_extractor(path: str | os.PathLike | None = None) -> ClassifierExtractor:
    """The digit evaluator at ``path`` (default: the shipped MNIST one) as a feature extractor."""
    return classifier_extractor("digits", path)


# --------------------------------------------------------------------------- training


def _shift(x: torch.Tensor, rng: torch.Generator, max_shift: int = 2, *, mode: str = "background") -> torch.Tensor:
    """Shift each image by up to ``max_shift`` pixels in each direction.

    ``background`` fills with -1 (a digit's black background); ``reflect`` mirrors the border,
    the random-crop augmentation of colour classifiers. One slice of a padded copy per distinct
    offset, which gives the same images as a per-pixel gather (tests/test_colour_evaluator.py).
    """
    _, _, h, w = x.shape
    pad = (max_shift,) * 4
    padded = F.pad(x, pad, mode="reflect") if mode == "reflect" else F.pad(x, pad, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, len(x)), generator=rng, device=x.device)
    out = torch.empty_like(x)
    offset = dy * (2 * max_shift + 1) + dx
    for value in offset.unique().tolist():
        index = (offset == value).nonzero().squeeze(1)
        oy, ox = divmod(value, 2 * max_shift + 1)
        out[index] = padded[index, :, oy : oy + h, ox : ox + w]
    return out


def _flip(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right (photos stay photos; digits would not)."""
    flip = torch.rand(len(x), generator=rng, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


@torch.no_grad()
def accuracy(model: nn.Module, data: InMemoryImages, *, batch_size: int = 1000) -> float:
    """Share of ``data`` that ``model`` classifies correctly (eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for images, labels in zip(data.images.split(batch_size), data.labels.split(batch_size)):
        logits = model(to_model_range(images.to(device)))
        correct += (logits.argmax(1).cpu() == labels).sum().item()
    return correct / len(data)


def train_evaluator(
    train: InMemoryImages,
    test: InMemoryImages,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float | None = None,
    width: int | None = None,
    num_classes: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    arch: str = "digits",
    precision: str = "fp32",
) -> tuple[Classifier, float]:
    """Train a classifier on labelled images (1x28x28 for ``digits``, 3x32x32 for ``colour``);
    return it and its test accuracy.

    Batches come straight from the in-memory uint8 tensor (no DataLoader). Digits: AdamW with a
    one-cycle learning rate, random shifts. Colour: SGD with Nesterov momentum, one-cycle, label
    smoothing, random crops and flips, the usual recipe for a small CIFAR network. ``precision``
    ``bf16`` trains under autocast; accuracy is always measured in fp32, as the features are used.
    """
    cls = ARCHITECTURES.get(arch)
    if cls is None:
        raise UserError(f"unknown evaluator architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    shape = (cls.channels, cls.image_size, cls.image_size)
    for split, data in (("training", train), ("test", test)):
        if data.labels is None:
            raise UserError(f"the evaluator needs labelled images; the {split} data has no labels")
        if tuple(data.images.shape[1:]) != shape:
            raise UserError(
                f"the {arch} evaluator takes {'x'.join(map(str, shape))} images, "
                f"got {'x'.join(map(str, data.images.shape[1:]))}"
            )
    if epochs < 1 or batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    if len(train) < batch_size:
        raise UserError(f"--batch-size {batch_size} is larger than the {len(train)} training images")
    device = torch.device(device)
    torch.manual_seed(seed)
    rng = torch.Generator(device=device).manual_seed(seed)
    kwargs = {"num_classes": num_classes} | ({"width": width} if width is not None else {})
    # channels_last: measured 1.3-1.7x faster convolutions on CPU for the digit network
    model = cls(**kwargs).to(device, memory_format=torch.channels_last)
    steps_per_epoch = len(train) // batch_size
    total_steps = epochs * steps_per_epoch
    if arch == "colour":
        lr = 0.1 if lr is None else lr
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        label_smoothing = 0.1
    else:
        lr = 3e-3 if lr is None else lr
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
        label_smoothing = 0.0
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total_steps)
    images, labels = train.images.to(device), train.labels.to(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    from tqdm import tqdm

    with tqdm(total=total_steps, desc="evaluator", unit="step", disable=not progress) as bar:
        for epoch in range(epochs):
            model.train()
            start = time.perf_counter()
            order = torch.randperm(len(train), generator=rng, device=device)[: steps_per_epoch * batch_size]
            for index in order.split(batch_size):
                x = to_model_range(images[index])
                if arch == "colour":
                    x = _flip(_shift(x, rng, 4, mode="reflect"), rng)
                else:
                    x = _shift(x, rng)
                with amp:
                    loss = F.cross_entropy(
                        model(x.contiguous(memory_format=torch.channels_last)),
                        labels[index],
                        label_smoothing=label_smoothing,
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                bar.update()
            test_accuracy = accuracy(model, test)
            if progress:
                bar.write(
                    f"epoch {epoch + 1}/{epochs}  loss {loss.item():.4f}  test accuracy {test_accuracy:.4%}  "
                    f"({time.perf_counter() - start:.0f} s)"
                )
    # back to the default layout: the weights saved, and every later forward, match a freshly built model
    return model.eval().cpu().to(memory_format=torch.contiguous_format), test_accuracy


def save_evaluator(model: DigitClassifier, path: str | os.PathLike, meta: dict) -> None:
    """Write the weights, their config and ``meta`` (accuracy, command) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config(),
        "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    with writing(path, "the evaluator weights") as tmp:
        torch.save(state, tmp)


FASHION_LABELS = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
# labelled data with a test split: 28x28 grayscale for the digit network, 32x32 RGB for the colour one
TRAINABLE_DATASETS = {"mnist": "digits", "fashion-mnist": "digits", "cifar10": "colour"}


def build_evaluator(
    out: str | os.PathLike,
    *,
    data: str = "mnist",
    data_root: str | None = None,
    epochs: int = 3,
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    download: bool = False,
    precision: str = "auto",
) -> dict:
    """``dcgan evaluator train``: train on the training split, measure on the test split, write ``out``.

    Returns the metadata stored with the weights (test accuracy, time, the command).
    """
    from ..data import DataSpec, load
    from ..data.spec import CLASS_NAMES
    from ..runtime import resolve_precision

    if data not in TRAINABLE_DATASETS:
        raise UserError(f"the evaluator trains on {', '.join(TRAINABLE_DATASETS)}, not {data!r}")
    if epochs < 1 or batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    out = Path(out)
    if out.is_dir() or str(out).endswith(os.sep):
        raise UserError(f"--out {out} is a folder; give the weights file to write, e.g. {out / 'evaluator.pt'}")
    arch = TRAINABLE_DATASETS[data]
    cls = ARCHITECTURES[arch]
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    train_data, test_data = (
        load(
            DataSpec(
                name=data,
                root=data_root,
                split=split,
                channels=cls.channels,
                image_size=cls.image_size,
                download=download,
            ),
            progress=progress,
        )
        for split in ("train", "test")
    )
    start = time.perf_counter()
    model, test_accuracy = train_evaluator(
        train_data,
        test_data,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        progress=progress,
        arch=arch,
        precision=precision,
    )
    root = f" --data-root {data_root}" if data_root else ""
    labels = {"fashion-mnist": list(FASHION_LABELS), "cifar10": list(CLASS_NAMES["cifar10"])}
    meta = {
        "data": data,
        "test_accuracy": test_accuracy,
        "num_test_images": len(test_data),
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch": str(torch.__version__),
        "precision": precision,
        "labels": labels.get(data, [str(i) for i in range(10)]),
        "command": f"dcgan evaluator train --data {data}{root} --epochs {epochs} --batch-size {batch_size} "
        f"--seed {seed} --out {out}",
    }
    save_evaluator(model, out, meta)
    return meta
