"""The package as users install it: a wheel and an sdist built from this tree, the wheel installed (not
editable) into a fresh virtual environment and run from outside the checkout.

The environment reuses this interpreter's site packages (``--system-site-packages``) so that torch and the
other dependencies need no network; the wheel itself is installed with ``--no-deps --no-index``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# what must ship inside the package, as paths in the wheel
PACKAGE_DATA = (
    "dcgan/py.typed",
    "dcgan/weights/mnist_evaluator.pt",
    "dcgan/pretrained/mnist.safetensors",
    "dcgan/pretrained/mnist.json",
    "dcgan/pretrained/mnist.png",
    "dcgan/pretrained/cifar10.safetensors",
    "dcgan/pretrained/anime-faces.safetensors",
    "dcgan/weights/cifar10_evaluator.pt",
)


def _run(args, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done, time.perf_counter() - start


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the build package is not installed (pip install build, or dcgan[test])")
    tree = tmp_path_factory.mktemp("tree")
    # build from a copy, so that build/ and *.egg-info never appear in the checkout
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    _, seconds = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)])
    print(f"built the sdist and the wheel in {seconds:.1f} s")
    return out


def test_wheel_and_sdist_hold_the_weights_cards_and_type_marker(dist):
    (wheel,) = dist.glob("dcgan-*.whl")
    (sdist,) = dist.glob("dcgan-*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PACKAGE_DATA) <= names, set(PACKAGE_DATA) - names
    assert "dcgan/pretrained/__init__.py" in names and not any(n.startswith("tests/") for n in names)
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {f"src/{path}" for path in PACKAGE_DATA} <= members


def test_the_wheel_installed_in_a_fresh_venv_trains_samples_and_evaluates(dist, tmp_path):
    (wheel,) = dist.glob("dcgan-*.whl")
    venv = tmp_path / "venv"
    try:
        _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    except AssertionError as e:
        pytest.skip(f"cannot make a virtual environment with pip here: {str(e).splitlines()[-1]}")
    python, dcgan = venv / "bin" / "python", venv / "bin" / "dcgan"
    _, install_s = _run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q", str(wheel)]
    )
    work = tmp_path / "elsewhere"  # not the checkout: nothing of it can be imported from here
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DCGAN_CACHE_DIR"] = str(tmp_path / "cache")
    where, _ = _run([python, "-c", "import dcgan; print(dcgan.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    times = {"install": install_s}
    _, times["train --dry-run"] = _run(
        [dcgan, "train", "--dry-run", "--run-dir", "run", "--device", "cpu", "--quiet"], cwd=work, env=env
    )
    assert (work / "run" / "checkpoints" / "latest.pt").is_file()
    _, times["sample --pretrained mnist"] = _run(
        [dcgan, "sample", "--pretrained", "mnist", "-o", "grid.png"], cwd=work, env=env
    )
    assert (work / "grid.png").stat().st_size > 1000
    result, times["eval"] = _run([dcgan, "eval", "run", "-n", "200", "--k", "0", "--json"], cwd=work, env=env)
    figures = json.loads(result.stdout)
    assert figures["step"] == 1 and figures["num_images"] == 200 and figures["fid"] > 0
    listing, _ = _run([dcgan, "pretrained"], cwd=work, env=env)
    shipped = {line.split()[0] for line in listing.stdout.splitlines() if not line.startswith("files:")}
    assert {"mnist", "cifar10", "anime-faces"} <= shipped and str(venv) in listing.stdout
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
