"""Shared fixtures: the built-in digits loaded once, and the tiny training options every run uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dcgan.data import DataSpec, InMemoryImages, load

# Real data for the tests that need it: $DCGAN_TEST_DATA, else ../shared/data beside the clone (on disk
# for every developer and CI run). Where it is absent those tests skip with the reason.
TEST_DATA = Path(os.environ.get("DCGAN_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MNIST_DIR = TEST_DATA / "mnist"

# Options that make a CLI training run take seconds on two CPU cores.
TINY_TRAIN = [
    "--g-width",
    "8",
    "--d-width",
    "8",
    "--batch-size",
    "16",
    "--max-images",
    "64",
    "--steps",
    "4",
    "--log-every-steps",
    "2",
    "--sample-every-steps",
    "2",
    "--checkpoint-every-steps",
    "2",
    "--num-samples",
    "16",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--quiet",
]


def pytest_configure(config):
    # The test models are tiny: a second intra-op thread only adds synchronisation, and on a
    # shared 2-core machine spinning OpenMP threads made one width-8 step 100x slower (2 s).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the MNIST IDX files are not at {MNIST_DIR} (set DCGAN_TEST_DATA to the folder holding mnist/)")
    return str(MNIST_DIR)


@pytest.fixture(scope="session")
def tiny_train() -> tuple[str, ...]:
    """CLI options for a seconds-long training run; add --run-dir (and override by repeating)."""
    return tuple(TINY_TRAIN)


@pytest.fixture(scope="session")
def mnist5k() -> InMemoryImages:
    """The 5,000 built-in digits; parsing the CSV takes seconds, so once per session."""
    return load(DataSpec(), progress=False)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global RNG state, so statistics are reproducible."""
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Cached statistics and downloads go to a per-session folder, never the user's ~/.cache."""
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dcgan-cache"))
