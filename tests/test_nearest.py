"""The memorisation check: replayed training images are flagged, unseen real images are not; ``dcgan nearest``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.metrics import digit_extractor
from dcgan.metrics.nearest import FLAG_RATIO, memorisation, nearest, neighbour_grid


@pytest.fixture(scope="module")
def split(mnist5k):
    """Disjoint parts of the built-in digits: 'train', 'test' and further unseen images."""
    images = mnist5k.images
    return images[:2000], images[2000:2300], images[2300:2600]


def test_nearest_finds_exact_neighbours():
    reference = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
    d, i = nearest(torch.tensor([[3.0, 4.0], [9.0, 0.0]]), reference, k=2, chunk_rows=1)
    assert i.tolist() == [[1, 0], [2, 1]]
    assert torch.allclose(d, torch.tensor([[0.0, 5.0], [1.0, 7.2111025]]))


def test_a_model_that_replays_training_images_is_flagged(split):
    train, test, unseen = split
    extractor = digit_extractor()
    replay = train[torch.randperm(len(train))[:300]]
    reports, neighbours = memorisation(replay, train, test, extractor, k=2)
    for space in ("features", "pixels"):
        assert reports[space].ratio < 0.01 and reports[space].flagged
        assert reports[space].near_copy_share == 1.0
    # in pixel space each replayed image finds itself first (MNIST holds no exact duplicates here)
    assert torch.equal(train[neighbours["pixels"][:, 0]], replay)

    honest, _ = memorisation(unseen, train, test, extractor)
    for space in ("features", "pixels"):
        assert 0.8 < honest[space].ratio < 1.25 and not honest[space].flagged
        assert honest[space].near_copy_share < 0.05
    assert FLAG_RATIO == 0.5


def test_neighbour_grid_puts_each_sample_beside_its_neighbours(split):
    train = split[0][:50]
    samples = train[[4, 9, 20]]
    neighbours = {"features": torch.tensor([[4, 1], [9, 2], [20, 3]]), "pixels": torch.tensor([[5, 6], [7, 8], [0, 1]])}
    grid = np.asarray(neighbour_grid(samples, train, neighbours, rows_per_block=2))
    # 2 blocks (rows 0-1, then row 2); each row: sample, gap, 2 feature neighbours, gap, 2 pixel neighbours
    assert grid.shape == (2 + 2 * 30, 2 + 2 * (5 * 30 + 12) + 24)  # a 24 px gap between the blocks
    assert np.array_equal(grid[2:30, 2:30], samples[0, 0].numpy())
    assert np.array_equal(grid[32:60, 2 + 30 + 6 : 30 + 30 + 6], train[9, 0].numpy())  # row 1, first feature NN
    x = 2 + 3 * 30 + 12  # the first pixel neighbour, after both gaps
    assert np.array_equal(grid[2:30, x : x + 28], train[5, 0].numpy())


def test_dcgan_nearest_on_a_run(tmp_path, tiny_train, mnist5k, capsys):
    for name, images in (("train", mnist5k.images[:64]), ("test", mnist5k.images[64:104])):
        (tmp_path / name).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image[0].numpy()).save(tmp_path / name / f"{i:03d}.png")
    run = tmp_path / "run"
    assert (
        main(["train", *tiny_train, "--data", "folder", "--data-root", str(tmp_path / "train"), "--run-dir", str(run)])
        == 0
    )
    out = tmp_path / "nn.png"
    base = ["nearest", str(run), "-n", "5", "-k", "2", "--num-compare", "30", "-o", str(out), "--device", "cpu"]
    capsys.readouterr()
    assert main([*base, "--test-data", "folder", "--test-root", str(tmp_path / "test"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 30 and report["num_test"] == 30 and report["num_train"] == 64
    assert set(report) >= {"features", "pixels"} and report["pixels"]["ratio"] > 0
    assert Image.open(out).size == (2 + 5 * 30 + 12, 2 + 5 * 30)

    assert main(base) == 2  # a folder run has no test split
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no test split" in err and "Traceback" not in err

    # a run on the first 40 images is compared with those 40, not the whole folder
    small = tmp_path / "small"
    assert (
        main(
            [
                "train",
                *tiny_train,
                "--data",
                "folder",
                "--data-root",
                str(tmp_path / "train"),
                "--max-images",
                "40",
                "--batch-size",
                "8",
                "--run-dir",
                str(small),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "nearest",
                str(small),
                "-n",
                "5",
                "--num-compare",
                "30",
                "-o",
                str(tmp_path / "small.png"),
                "--test-data",
                "folder",
                "--test-root",
                str(tmp_path / "test"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["num_train"] == 40
