"""FID, KID, IS and class coverage: identities against references, the digit evaluator, the cache, ``dcgan eval``."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from dcgan.cli import main
from dcgan.data import DataSpec, InMemoryImages, load, to_model_range
from dcgan.errors import UserError
from dcgan.metrics import (
    DigitClassifier,
    digit_extractor,
    evaluate,
    frechet_distance,
    inception_extractor,
    kernel_distance,
    load_evaluator,
    real_features,
    train_evaluator,
)
from dcgan.metrics.evaluate import cache_path, class_coverage, inception_score
from dcgan.metrics.evaluator import _shift, accuracy, save_evaluator
from dcgan.metrics.inception import WEIGHTS_URL, InceptionExtractor
from dcgan.models import Generator
from dcgan.sample import generate


class LinearExtractor(nn.Module):
    """Stand-in feature network: a fixed random projection of the pixels; counts the images it sees."""

    name = "stand-in"
    labels = None

    def __init__(self, num_features: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(784, num_features, generator=g) / 28, requires_grad=False)
        self.num_features, self.cache_key, self.images_seen = num_features, f"linear-{seed}", 0

    def features_and_logits(self, images_u8):
        self.images_seen += len(images_u8)
        return to_model_range(images_u8).flatten(1) @ self.weight, None

    def forward(self, images_u8):
        return self.features_and_logits(images_u8)[0]


class ReplayGenerator(nn.Module):
    """A 'generator' whose samples are exactly the given images, in order."""

    latent_dim = 4

    def __init__(self, images_u8: torch.Tensor) -> None:
        super().__init__()
        self.images, self.position = images_u8, 0
        self.anchor = nn.Parameter(torch.zeros(()))  # evaluate reads the device from the parameters

    def forward(self, z):
        out = self.images[self.position : self.position + len(z)]
        self.position += len(z)
        return to_model_range(out)


def scipy_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """The reference formula (pytorch-fid's), with scipy's matrix square root."""
    a, b = a.double().numpy(), b.double().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.fixture(scope="module")
def mnist_test(mnist_dir) -> InMemoryImages:
    """The real MNIST test split; skips (with the reason) where the IDX files are not on disk."""
    return load(DataSpec(name="mnist", root=mnist_dir, split="test"), progress=False)


@pytest.fixture(scope="module")
def digits():
    return digit_extractor()


# --------------------------------------------------------------------------- the metrics against references


def test_fid_of_a_set_against_itself_is_zero(mnist5k):
    features = LinearExtractor()(mnist5k.images[:1000])
    assert abs(frechet_distance(features, features)) < 1e-8


def test_fid_equals_the_scipy_reference_on_stand_in_features(mnist5k):
    extractor = LinearExtractor()
    real, fake = extractor(mnist5k.images[:1000]), extractor(mnist5k.images[1000:1500].flip(-1))
    expected = scipy_fid(real, fake)
    assert expected > 1.0
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-7)


def test_fid_of_shifted_gaussians_is_the_squared_mean_distance():
    # equal covariances: the trace term vanishes and FID is ||mu1 - mu2||^2 exactly
    x = torch.randn(2000, 8, dtype=torch.float64) @ torch.randn(8, 8, dtype=torch.float64)
    shift = torch.arange(8, dtype=torch.float64) / 4
    assert frechet_distance(x, x + shift) == pytest.approx(shift.square().sum().item(), rel=1e-9, abs=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_not_for_two():
    a, b = torch.randn(1000, 16), torch.randn(1000, 16)
    same_mean, same_std = kernel_distance(a, b, subsets=20, subset_size=500)
    other_mean, _ = kernel_distance(a, b + 0.5, subsets=20, subset_size=500)
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert other_mean > 50 * abs(same_mean) and other_mean > 0.05
    assert kernel_distance(a, b, subsets=20, subset_size=500) == (same_mean, same_std), "seeded subsets"


@pytest.mark.filterwarnings("ignore:std\\(\\)")  # one split has no spread
def test_inception_score_is_one_for_one_class_and_the_class_count_for_confident_uniform():
    one_class = torch.full((100, 10), -20.0)
    one_class[:, 3] = 20.0
    uniform = torch.full((100, 10), -20.0)
    uniform[torch.arange(100), torch.arange(100) % 10] = 20.0
    assert inception_score(one_class, splits=5)[0] == pytest.approx(1.0, abs=1e-6)
    # one split: its marginal is exactly uniform (random splits of 100 images are not)
    assert inception_score(uniform, splits=1)[0] == pytest.approx(10.0, rel=1e-6)


def test_class_coverage_counts_predicted_classes():
    predictions = torch.tensor([0, 0, 0, 1, 2, 2, 9, 9, 9, 9])
    shares = class_coverage(torch.nn.functional.one_hot(predictions, 10).float(), tuple("0123456789"))
    assert shares == {
        "0": 0.3,
        "1": 0.1,
        "2": 0.2,
        "3": 0.0,
        "4": 0.0,
        "5": 0.0,
        "6": 0.0,
        "7": 0.0,
        "8": 0.0,
        "9": 0.4,
    }


class ThresholdClassifier(LinearExtractor):
    """A fake classifier: class 1 for images brighter than ``threshold`` on average, else class 0."""

    labels = ("dark", "bright")
    num_classes = 2

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def features_and_logits(self, images_u8):
        features, _ = super().features_and_logits(images_u8)
        bright = images_u8.float().mean((1, 2, 3)) > self.threshold
        return features, torch.nn.functional.one_hot(bright.long(), 2).float() * 40 - 20


def test_evaluate_reports_class_coverage_and_a_collapse(mnist5k):
    real = mnist5k.images[:400]
    brightness = real.float().mean((1, 2, 3))
    threshold = brightness.median().item()
    expected_bright = (brightness > threshold).float().mean().item()
    result = evaluate(
        ReplayGenerator(real), real, ThresholdClassifier(threshold), num_images=400, batch_size=64, progress=False
    )
    assert result.class_shares == {"dark": 1 - expected_bright, "bright": expected_bright}
    assert result.min_class_share == min(expected_bright, 1 - expected_bright)

    collapsed = real[:1].expand(400, -1, -1, -1)  # every sample the same image
    result = evaluate(
        ReplayGenerator(collapsed), real, ThresholdClassifier(threshold), num_images=400, batch_size=64, progress=False
    )
    assert result.min_class_share == 0.0
    assert result.is_mean == pytest.approx(1.0, abs=1e-6)


def test_evaluate_a_generator_that_replays_the_real_set(mnist5k, digits):
    real = mnist5k.images[::10]  # 500 digits, 50 of each class
    result = evaluate(ReplayGenerator(real), real, digits, num_images=500, batch_size=128, progress=False)
    assert abs(result.fid) < 1e-6
    assert result.num_images == result.num_real_images == 500
    labels = torch.bincount(mnist5k.labels[::10], minlength=10) / 500
    shares = torch.tensor(list(result.class_shares.values()))
    assert (shares - labels).abs().max() < 0.02  # the evaluator is ~99% accurate
    assert result.min_class_share == min(result.class_shares.values())
    assert 8.0 < result.is_mean <= 10.0


# --------------------------------------------------------------------------- the digit evaluator


def test_shipped_evaluator_accuracy_on_the_real_test_set(mnist_test):
    """The accuracy the weights file records (and the docs quote) is measured again on all 10,000."""
    model, meta = load_evaluator()
    measured = accuracy(model, mnist_test)
    assert len(mnist_test) == meta["num_test_images"] == 10_000
    assert measured == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert measured >= 0.99 and meta["command"].startswith("dcgan evaluator train")


def test_shipped_evaluator_classifies_the_builtin_digits(mnist5k, digits):
    features, logits = digits.features_and_logits(mnist5k.images)
    assert features.shape == (5000, digits.num_features) == (5000, 128)
    assert (logits.argmax(1) == mnist5k.labels).float().mean().item() >= 0.99


def test_evaluator_reads_other_sizes_and_channels(mnist5k, digits):
    images = mnist5k.images[:8]
    rgb64 = torch.nn.functional.interpolate(images.float(), size=64, mode="nearest").round().to(torch.uint8)
    features, _ = digits.features_and_logits(rgb64.expand(-1, 3, -1, -1))
    assert features.shape == (8, 128)


def test_train_save_load_roundtrip(tmp_path, mnist5k):
    small = InMemoryImages(mnist5k.images[::20], mnist5k.labels[::20])  # 250 images, every class
    model, acc = train_evaluator(small, small, epochs=6, batch_size=32, progress=False)
    assert acc == accuracy(model, small) and acc > 0.2  # the returned figure is the model's; above chance
    x = to_model_range(mnist5k.images[:16])
    save_evaluator(model, tmp_path / "e.pt", {"test_accuracy": acc})
    loaded, meta = load_evaluator(tmp_path / "e.pt")
    assert isinstance(loaded, DigitClassifier) and meta == {"test_accuracy": acc}
    assert torch.equal(loaded(x), model(x))
    assert loaded.features(x).shape == (16, 128)
    with pytest.raises(UserError, match="labelled"):
        train_evaluator(InMemoryImages(small.images), small, epochs=1)


def test_training_shifts_are_windows_of_the_padded_image(mnist5k):
    x = to_model_range(mnist5k.images[::500])
    shifted = _shift(x, torch.Generator().manual_seed(0), max_shift=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)
    offsets = []
    for image, original in zip(shifted, padded):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(image[0], original[0, dy : dy + 28, dx : dx + 28])
        ]
        assert matches, "every output is the image shifted by at most 2 pixels"
        offsets.append(matches[0])
    assert len(set(offsets)) > 1, "each image draws its own shift"


def test_evaluator_cli_rejects_a_dataset_without_test_split(capsys):
    assert main(["evaluator", "train", "--data", "mnist-5k", "--out", "x.pt"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the real-data cache


def test_real_statistics_are_cached_reused_and_keyed(tmp_path, mnist5k):
    real, fake = mnist5k.images[:300], mnist5k.images[300:500]
    key = {"dataset": "mnist-5k", "root": None, "split": "train", "image_size": 28, "channels": 1}
    loads = []

    def load_real():
        loads.append(1)
        return real

    extractor = LinearExtractor()
    first = evaluate(
        ReplayGenerator(fake), load_real, extractor, num_images=200, cache_key=key, cache_dir=tmp_path, progress=False
    )
    assert extractor.images_seen == 300 + 200 and len(loads) == 1
    files = list(tmp_path.iterdir())
    assert files == [cache_path(tmp_path, {**key, "extractor": "linear-0"})]
    assert files[0].name.startswith("mnist-5k-train-28px-linear-")

    second = evaluate(
        ReplayGenerator(fake), load_real, extractor, num_images=200, cache_key=key, cache_dir=tmp_path, progress=False
    )
    assert extractor.images_seen == 300 + 200 + 200, "the second call reads the real features from the cache"
    assert len(loads) == 1, "a cache hit does not even load the data"
    assert second.fid == first.fid and second.kid_mean == first.kid_mean

    cached, _ = real_features(load_real, extractor, key=key, cache_dir=tmp_path)
    assert torch.equal(cached, extractor(real)), "the cache holds exactly the features"

    # another split, another extractor: other files
    real_features(load_real, extractor, key={**key, "split": "test"}, cache_dir=tmp_path)
    real_features(load_real, LinearExtractor(seed=1), key=key, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3 and len(loads) == 3
    assert not list(tmp_path.glob(".*.tmp*")), "no temporary files left behind"


def test_a_corrupt_cache_file_is_recomputed(tmp_path, mnist5k, capsys):
    real = mnist5k.images[:100]
    key = {"dataset": "x", "split": "train"}
    extractor = LinearExtractor()
    path = cache_path(tmp_path, {**key, "extractor": extractor.cache_key})
    path.write_bytes(b"not a torch file")
    features, written = real_features(real, extractor, key=key, cache_dir=tmp_path)
    assert written == path and torch.equal(torch.load(path, weights_only=True)["features"], features)
    assert "recomputing" in capsys.readouterr().err


# --------------------------------------------------------------------------- Inception


def test_inception_without_weights_offline_is_one_user_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError) as info:
        inception_extractor()
    message = str(info.value)
    assert "\n" not in message and WEIGHTS_URL in message and str(tmp_path) in message
    with pytest.raises(UserError, match="does not exist"):
        inception_extractor(tmp_path / "missing.pth")


class TinyInception(nn.Module):
    """Stand-in for the Inception network: uint8 RGB -> (features, logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        features = self.conv(x.float() / 255).mean((2, 3))
        return features, features[:, :4] * 2


def test_inception_code_path_with_a_stand_in_network(tmp_path, mnist5k):
    weights = tmp_path / "weights.pth"
    torch.save(TinyInception().state_dict(), weights)
    built = []

    def build(path):
        network = TinyInception()
        network.load_state_dict(torch.load(path, weights_only=True))
        built.append(path)
        return network

    extractor = inception_extractor(weights, build=build)
    assert isinstance(extractor, InceptionExtractor) and built == [weights]
    assert extractor.cache_key.startswith("inception-")
    features, logits = extractor.features_and_logits(mnist5k.images[:5])  # grayscale becomes RGB
    assert features.shape == (5, 6) and logits.shape == (5, 4)

    extractor = InceptionExtractor(TinyInception(), cache_key="tiny", num_features=6, num_classes=4)
    real = mnist5k.images[:200]
    result = evaluate(ReplayGenerator(real), real, extractor, num_images=200, progress=False)
    assert abs(result.fid) < 1e-6 and result.is_mean is not None and result.class_shares is None

    (tmp_path / "not_weights.pth").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable weights file"):
        inception_extractor(tmp_path / "not_weights.pth", build=build)


def test_the_torch_fidelity_network_loads_from_a_weights_file(tmp_path, monkeypatch, mnist5k):
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    network = fidelity.FeatureExtractorInceptionV3
    # a weights file with the network's own keys and random values: build one instance without loading
    torch.save({}, tmp_path / "empty.pth")
    with monkeypatch.context() as patch:
        patch.setattr(network, "load_state_dict", lambda self, state_dict, *args, **kwargs: None)
        random_init = network(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(tmp_path / "empty.pth")
        )
    torch.save(random_init.state_dict(), tmp_path / "random.pth")

    extractor = inception_extractor(tmp_path / "random.pth")
    features, logits = extractor.features_and_logits(mnist5k.images[:2])
    assert features.shape == (2, 2048) == (2, extractor.num_features) and logits.shape == (2, 1008)


# --------------------------------------------------------------------------- dcgan eval


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    assert (
        main(
            [
                "train",
                "--steps",
                "3",
                "--g-width",
                "8",
                "--d-width",
                "8",
                "--batch-size",
                "16",
                "--max-images",
                "128",
                "--quiet",
                "--device",
                "cpu",
                "--run-dir",
                str(run_dir),
            ]
        )
        == 0
    )
    return run_dir


def test_eval_cli_json(tiny_run, tmp_path, capsys):
    argv = ["eval", str(tiny_run), "--num-images", "200", "--cache-dir", str(tmp_path), "--device", "cpu"]
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["extractor"] == "digits" and out["data"] == "mnist-5k" and out["num_images"] == 200
    assert out["num_real_images"] == 5000 and out["step"] == 3 and out["generator"] == "ema"
    assert math.isfinite(out["fid"]) and out["fid"] > 0 and math.isfinite(out["kid_mean"])
    shares = out["class_shares"]
    assert list(shares) == [str(i) for i in range(10)] and sum(shares.values()) == pytest.approx(1.0)
    assert out["min_class_share"] == min(shares.values()) == shares[out["min_class"]]
    # IS and the shares are those of the evaluator's logits on exactly the generated images
    images = generate(Generator.from_checkpoint(tiny_run, torch.device("cpu")), 200, seed=0, batch_size=250)
    logits = digit_extractor().features_and_logits(images)[1]
    assert out["is_mean"] == pytest.approx(inception_score(logits, seed=0)[0], rel=1e-6)
    assert out["class_shares"] == pytest.approx(class_coverage(logits, tuple(shares)), rel=1e-6)
    assert len(list(tmp_path.glob("mnist-5k-train-28px-digits-*.pt"))) == 1

    # again, as a table, from the cache: the same numbers
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert re.search(rf"^FID \(digits, {out['num_images']}\) +{out['fid']:.3f}$", table, re.MULTILINE)
    assert "smallest class" in table


def test_eval_cli_user_errors_are_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for argv in (
        ["eval", str(tiny_run), "--extractor", "inception"],
        ["eval", str(tiny_run), "--inception-weights", "w.pth"],
        ["eval", str(tiny_run), "--num-images", "1"],
        ["eval", str(tmp_path / "nothing")],
    ):
        capsys.readouterr()
        assert main(argv + ["--cache-dir", str(tmp_path)]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


def test_evaluation_during_training_logs_fid_and_keeps_best(tmp_path):
    from dcgan.cli import main

    run = tmp_path / "run"
    argv = [
        "train",
        "--steps",
        "4",
        "--g-width",
        "8",
        "--d-width",
        "8",
        "--batch-size",
        "16",
        "--max-images",
        "128",
        "--quiet",
        "--device",
        "cpu",
        "--log-every-steps",
        "2",
        "--eval-every-steps",
        "2",
        "--eval-num-images",
        "64",
        "--run-dir",
        str(run),
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "fid" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert evals[0]["fid"] != evals[1]["fid"]  # measured anew at each step
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_fid"] == min(r["fid"] for r in evals)
    assert best["step"] == min(evals, key=lambda r: r["fid"])["step"]
