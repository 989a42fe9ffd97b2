"""The colour evaluator: its network, the shipped CIFAR-10 weights, CIFAR-10 as class folders, the extractor choice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TEST_DATA
from PIL import Image

from dcgan.data import DataSpec, InMemoryImages, load
from dcgan.data.spec import CLASS_NAMES
from dcgan.errors import UserError
from dcgan.metrics.evaluator import (
    SHIPPED,
    ColourClassifier,
    DigitClassifier,
    _shift,
    accuracy,
    build_classifier,
    classifier_extractor,
    digit_extractor,
    load_evaluator,
    save_evaluator,
    train_evaluator,
)
from dcgan.metrics.report import EvalOptions, _extractor, default_extractor

CIFAR_DIR = TEST_DATA / "cifar10"


def _gather_shift(x, rng, max_shift, mode):
    """The per-pixel gather that ``_shift`` replaces: the same draws must give the same images."""
    n, c, h, w = x.shape
    pad = (max_shift,) * 4
    padded = F.pad(x, pad, mode="reflect") if mode == "reflect" else F.pad(x, pad, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=rng)
    rows = (torch.arange(h)[None] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w)[None] + dx[:, None])[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


@pytest.mark.parametrize("mode, channels", [("background", 1), ("reflect", 3)])
def test_shift_matches_a_per_pixel_gather(mode, channels):
    x = torch.randn(64, channels, 9, 9)
    got = _shift(x, torch.Generator().manual_seed(3), 4, mode=mode)
    want = _gather_shift(x, torch.Generator().manual_seed(3), 4, mode)
    assert torch.equal(got, want)
    assert not torch.equal(got, x)  # something moved


def test_colour_classifier_shapes_and_config_round_trip():
    model = ColourClassifier(width=8, num_features=32).eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    assert model.features(x).shape == (5, 32) and model(x).shape == (5, 10)
    rebuilt = build_classifier(model.config())
    assert isinstance(rebuilt, ColourClassifier) and rebuilt.config() == model.config()
    # a digit evaluator's file carries no "arch": it still builds the digit network
    assert isinstance(build_classifier(DigitClassifier(width=8).config()), DigitClassifier)
    with pytest.raises(UserError, match="unknown evaluator architecture"):
        build_classifier({"arch": "transformer"})


def test_colour_training_learns_a_separable_toy_problem(tmp_path):
    # two classes: bright images and dark ones; a few epochs must separate them well above chance
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (512,), generator=g)
    images = (torch.rand(512, 3, 32, 32, generator=g) * 100 + labels[:, None, None, None] * 120).to(torch.uint8)
    data = InMemoryImages(images, labels)
    model, test_accuracy = train_evaluator(
        data, data, epochs=6, batch_size=64, width=8, num_classes=2, arch="colour", progress=False
    )
    assert test_accuracy > 0.9 and accuracy(model, data) == test_accuracy
    save_evaluator(model, tmp_path / "e.pt", {"data": "toy", "labels": ["dark", "bright"]})
    extractor = classifier_extractor("cifar10", tmp_path / "e.pt")
    assert extractor.name == "toy" and extractor.labels == ("dark", "bright")  # named by its data, not "cifar10"
    with pytest.raises(UserError, match="takes 3x32x32 images"):
        train_evaluator(InMemoryImages(images[:, :1], labels), data, epochs=1, arch="colour", progress=False)


def test_shipped_colour_evaluator_reads_any_size_and_channel_count():
    extractor = classifier_extractor("cifar10")
    assert extractor.name == "cifar10" and extractor.labels == CLASS_NAMES["cifar10"]
    assert extractor.cache_key.startswith("cifar10-")
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    f64, logits = extractor.features_and_logits(images)
    assert f64.shape == (4, extractor.num_features) and logits.shape == (4, 10)
    # 64x64 input is read as its 32x32 antialiased resize, exactly
    from dcgan.data import resize_uint8

    assert torch.equal(extractor(resize_uint8(images, 3, 32)), f64)
    gray = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert extractor(gray).shape == (4, extractor.num_features)
    # the digit evaluator is untouched by the generalisation
    assert digit_extractor().name == "digits" and digit_extractor().num_features == 128


def test_shipped_colour_evaluator_meta_says_what_it_is():
    _, meta = load_evaluator(SHIPPED["cifar10"])
    assert meta["data"] == "cifar10" and meta["labels"] == list(CLASS_NAMES["cifar10"])
    assert meta["test_accuracy"] >= 0.85 and meta["num_test_images"] == 10_000
    assert meta["command"].startswith("dcgan evaluator train --data cifar10")


def test_default_extractor_is_offline_for_colour():
    assert default_extractor(1) == "digits" and default_extractor(3) == "cifar10"
    assert _extractor(EvalOptions(), 3).name == "cifar10"
    assert _extractor(EvalOptions(), 1).name == "digits"
    with pytest.raises(UserError, match="--inception-weights goes with --extractor inception"):
        _extractor(EvalOptions(extractor="cifar10", inception_weights="x.pth"), 3)


def _cifar_like_folder(root, *, extra_class: str | None = None):
    for split, per_class in (("train", 3), ("test", 2)):
        for k, name in enumerate(CLASS_NAMES["cifar10"] + ((extra_class,) if extra_class else ())):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (32, 32), (k * 20, i * 50, 7)).save(folder / f"{i:04d}.png")


def test_cifar10_class_folders_load_as_cifar10_with_its_labels(tmp_path):
    _cifar_like_folder(tmp_path)
    for split, per_class in (("train", 3), ("test", 2)):
        data = load(
            DataSpec(name="cifar10", root=str(tmp_path), split=split, channels=3, image_size=32), progress=False
        )
        assert data.images.shape == (10 * per_class, 3, 32, 32)
        assert data.labels.tolist() == [k for k in range(10) for _ in range(per_class)]
        # the red channel encodes the class: each image carries its own folder's label
        assert (data.images[:, 0, 0, 0].long() // 20).tolist() == data.labels.tolist()


def test_cifar10_folder_with_a_foreign_class_is_refused(tmp_path):
    _cifar_like_folder(tmp_path, extra_class="zebra")
    with pytest.raises(UserError, match="not CIFAR-10 classes: zebra"):
        load(DataSpec(name="cifar10", root=str(tmp_path), channels=3, image_size=32), progress=False)


@pytest.mark.skipif(not (CIFAR_DIR / "test").is_dir(), reason=f"CIFAR-10 class folders not at {CIFAR_DIR}")
def test_shipped_colour_evaluator_scores_the_test_split_as_its_file_says():
    model, meta = load_evaluator(SHIPPED["cifar10"])
    test = load(DataSpec(name="cifar10", root=str(CIFAR_DIR), split="test", channels=3, image_size=32), progress=False)
    # measured in fp32 both times; only the memory layout differs, which may flip an argmax or two
    assert accuracy(model, test) == pytest.approx(meta["test_accuracy"], abs=1e-3)
