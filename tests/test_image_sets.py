"""Evaluating a folder or .npz of images, precision/recall in ``dcgan eval``, ``dcgan stats`` (pytorch-fid's format)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.metrics import digit_extractor, frechet_distance
from dcgan.metrics.evaluate import extract
from dcgan.metrics.image_sets import feature_statistics, frechet_from_statistics, load_image_set


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory, mnist5k):
    """The same 300 real digits of every class as an .npz (dcgan sample's layout) and as a folder of PNGs."""
    base = tmp_path_factory.mktemp("image-sets")
    images = mnist5k.images[torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:300]]  # sorted by class
    np.savez_compressed(base / "digits.npz", images=images.permute(0, 2, 3, 1).numpy())
    (base / "folder" / "nested").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(base / "folder" / ("nested" if i % 2 else "") / f"{i:04d}.png")
    return base, images


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err


def test_folder_and_npz_load_the_same_images(image_sets):
    base, images = image_sets
    assert torch.equal(load_image_set(base / "digits.npz"), images)
    folder = load_image_set(base / "folder", progress=False)
    # the folder is read in sorted path order: top-level even images, then nested/ odd ones
    order = sorted(range(len(images)), key=lambda i: ("nested/" if i % 2 else "") + f"{i:04d}.png")
    assert torch.equal(folder, images[order])


def test_eval_of_images_has_precision_and_recall_and_ignores_order(image_sets, capsys):
    base, _ = image_sets
    common = ["--data", "mnist-5k", "--device", "cpu", "--json", "--seed", "0"]
    from_npz = run_json(capsys, ["eval", str(base / "digits.npz"), *common])
    from_folder = run_json(capsys, ["eval", str(base / "folder"), *common])
    assert from_npz["num_images"] == 300 and from_npz["num_real_images"] == 5000
    # FID and the class shares do not depend on the order of the images
    assert from_folder["fid"] == pytest.approx(from_npz["fid"], rel=1e-6)
    assert from_folder["class_shares"] == pytest.approx(from_npz["class_shares"])
    # real digits against real digits: realistic and covering, as far as 300 images cover 5,000
    assert from_npz["precision"] > 0.6 and from_npz["recall"] > 0.6
    no_pr = run_json(capsys, ["eval", str(base / "digits.npz"), *common, "--k", "0"])
    assert no_pr["precision"] is None and no_pr["fid"] == from_npz["fid"]
    assert from_npz["missing"] == {} and no_pr["missing"] == {
        "precision": "skipped (--k 0)",
        "recall": "skipped (--k 0)",
    }
    capsys.readouterr()
    assert main(["eval", str(base / "digits.npz"), *common[:-3], "--k", "0"]) == 0
    table = capsys.readouterr().out
    assert "precision  " in table and "missing: skipped (--k 0)" in table  # said, not left out


def test_eval_of_one_repeated_digit_has_low_recall(image_sets, capsys, tmp_path, mnist5k):
    collapsed = mnist5k.images[mnist5k.labels == 1][:300]
    np.savez_compressed(tmp_path / "ones.npz", images=collapsed.permute(0, 2, 3, 1).numpy())
    result = run_json(capsys, ["eval", str(tmp_path / "ones.npz"), "--data", "mnist-5k", "--device", "cpu", "--json"])
    assert result["precision"] > 0.8 and result["recall"] < 0.2
    assert result["min_class_share"] == 0.0


def test_eval_of_images_errors_are_one_line(image_sets, capsys, tmp_path):
    base, _ = image_sets
    assert "needs --data" in one_line_error(capsys, ["eval", str(base / "digits.npz")])
    np.savez(tmp_path / "floats.npz", images=np.zeros((4, 28, 28), dtype=np.float32))
    assert "expected uint8" in one_line_error(capsys, ["eval", str(tmp_path / "floats.npz"), "--data", "mnist-5k"])
    np.savez(tmp_path / "other.npz", labels=np.zeros(4))
    assert "no image array" in one_line_error(capsys, ["eval", str(tmp_path / "other.npz"), "--data", "mnist-5k"])
    (tmp_path / "empty").mkdir()
    assert "no images" in one_line_error(capsys, ["eval", str(tmp_path / "empty"), "--data", "mnist-5k"])
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert "not a readable" in one_line_error(capsys, ["eval", str(tmp_path / "broken.npz"), "--data", "mnist-5k"])


def test_stats_are_pytorch_fid_mu_and_sigma_and_feed_eval_ref(image_sets, capsys, tmp_path, mnist5k):
    base, images = image_sets
    out = tmp_path / "ref.npz"
    assert main(["stats", str(base / "digits.npz"), "-o", str(out), "--device", "cpu"]) == 0
    features, _ = extract(iter(images.split(250)), digit_extractor(), total=len(images), desc="", progress=False)
    with np.load(out) as f:
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (128, 128)
        # float32 features agree to about 1e-8 between the two paths; np.cov's N-1 against N would be 0.3% off
        np.testing.assert_allclose(f["mu"], features.double().mean(0).numpy(), rtol=1e-6)
        np.testing.assert_allclose(f["sigma"], np.cov(features.double().numpy(), rowvar=False), rtol=1e-5, atol=1e-7)

    same = run_json(capsys, ["eval", str(base / "folder"), "--ref", str(out), "--device", "cpu", "--json"])
    assert abs(same["fid"]) < 1e-6 and same["num_images"] == 300

    dataset = tmp_path / "mnist5k.npz"
    assert main(["stats", "mnist-5k", "-o", str(dataset), "--device", "cpu"]) == 0
    against = run_json(capsys, ["eval", str(base / "digits.npz"), "--ref", str(dataset), "--device", "cpu", "--json"])
    real, _ = extract(iter(mnist5k.images.split(250)), digit_extractor(), total=5000, desc="", progress=False)
    assert against["fid"] == pytest.approx(frechet_distance(real, features), rel=1e-6)


def test_frechet_from_statistics_is_the_feature_fid():
    a = torch.randn(2000, 6, dtype=torch.float64)
    b = torch.randn(1500, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64) + 0.3
    assert frechet_from_statistics(*feature_statistics(a), *feature_statistics(b)) == pytest.approx(
        frechet_distance(a, b), rel=1e-8
    )


def test_stats_errors_are_one_line(capsys, tmp_path, image_sets):
    base, _ = image_sets
    assert "must end in .npz" in one_line_error(capsys, ["stats", str(base / "digits.npz"), "-o", str(tmp_path / "r")])
    assert "unknown dataset" in one_line_error(capsys, ["stats", "nonsense", "-o", str(tmp_path / "r.npz")])
    assert "no mu and sigma" in one_line_error(
        capsys, ["eval", str(base / "digits.npz"), "--ref", str(base / "digits.npz")]
    )
    assert not (tmp_path / "r.npz").exists()
