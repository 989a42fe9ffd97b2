"""The demo page in a real browser: ``dcgan demo RUN`` served on a free loopback port, driven in headless Chromium.

Checks what a person would see: the grid, a typed seed's image (pixel for pixel the
seed computation ``dcgan sample --seeds`` uses), a slider move, a walk's frames and the
downloads. ``DCGAN_DEMO_RUN`` serves that run instead of a tiny one trained here;
``DCGAN_DEMO_SCREENSHOT`` saves a screenshot of the page there at the end.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import demo_page as page
import numpy as np
import pytest
import torch

from dcgan.cli import main
from dcgan.data import to_uint8
from dcgan.latent import seed_noise, walk
from dcgan.models import Generator

pytestmark = [pytest.mark.slow, pytest.mark.skipif(page.missing() is not None, reason=str(page.missing()))]


def pixels(image: torch.Tensor) -> np.ndarray:
    """uint8 [C, H, W] -> [H, W] or [H, W, 3], as Pillow decodes a PNG."""
    array = image.permute(1, 2, 0).numpy()
    return array[:, :, 0] if array.shape[2] == 1 else array


_cli_pixels: dict[tuple[str, int], np.ndarray] = {}


def seed_pixels(run: str, seed: int) -> np.ndarray:
    """The image of one seed as ``dcgan sample RUN --seeds S`` writes it (in-process, into an .npz)."""
    if (run, seed) not in _cli_pixels:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "seed.npz"
            assert main(["sample", run, "--seeds", str(seed), "-o", str(out), "--device", "cpu"]) == 0
            with np.load(out) as f:
                assert f["seeds"].tolist() == [seed]
                image = f["images"][0]  # [H, W, C]
        _cli_pixels[run, seed] = image[:, :, 0] if image.shape[2] == 1 else image
    return _cli_pixels[run, seed]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_train) -> str:
    if os.environ.get("DCGAN_DEMO_RUN"):
        return os.environ["DCGAN_DEMO_RUN"]
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    assert main(["train", *tiny_train, "--run-dir", str(run_dir)]) == 0
    return str(run_dir)


@pytest.fixture(scope="module")
def G(run):

    return Generator.from_checkpoint(run, torch.device("cpu"))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(run, downloads):
    port = page.free_port()
    proc = page.start_demo(run, port)
    browser = page.make_driver(download_dir=downloads)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        yield browser
    finally:
        browser.quit()
        out = page.stop_demo(proc)
    assert "Traceback" not in out, out


def shows(driver, selector: str, expected: list[np.ndarray], what: str) -> list[str]:
    """Wait until the images under ``selector`` are exactly ``expected``, pixel for pixel; their URLs."""
    seen: dict[str, np.ndarray] = {}

    def matches():
        found = [s for s in page.srcs(driver, selector) if s]
        if len(found) != len(expected):
            return None
        for src in found:
            if src not in seen:
                seen[src] = page.image_array(src)
        arrays = [seen[s] for s in found]
        ok = all(a.shape == e.shape and np.array_equal(a, e) for a, e in zip(arrays, expected))
        return found if ok else None

    return page.wait_for(matches, what=what)


def downloaded(downloads: Path, name: str) -> bytes:
    path = downloads / name
    page.wait_for(lambda: path.is_file() and path.stat().st_size > 0, what=f"the download {name}")
    return path.read_bytes()


def test_grid_renders_the_seeds_and_rerolls(driver, run, G):
    from selenium.webdriver.common.by import By

    shows(driver, "#grid img", [seed_pixels(run, s) for s in range(16)], "the grid of seeds 0-15")

    page.click(driver, "reroll")
    text = page.wait_for(
        lambda: (v := page.value_of(driver, "#seeds textarea")) != "0-15" and v, what="re-rolled seeds"
    )
    first, last = (int(x) for x in text.split("-"))
    assert last - first == 15
    shows(driver, "#grid img", [seed_pixels(run, s) for s in range(first, last + 1)], f"the grid of {text}")

    page.set_text(driver, "seeds", "3,70,7")
    shows(driver, "#grid img", [seed_pixels(run, s) for s in (3, 70, 7)], "the grid of seeds 3,70,7")

    # clicking a sample makes it the seed to steer
    driver.find_elements(By.CSS_SELECTOR, "#grid img")[1].click()
    page.wait_for(lambda: page.value_of(driver, "#seed input") == "70", what="seed 70 in the seed box")
    shows(driver, "#current-image img", [seed_pixels(run, 70)], "the image of the clicked seed 70")


def test_typed_seed_shows_the_seed_image_and_downloads_it(driver, run, G, downloads):
    from PIL import Image

    page.set_number(driver, "seed", 4242)
    shows(driver, "#current-image img", [seed_pixels(run, 4242)], "the image of seed 4242")

    page.click(driver, "download-png")
    png = np.asarray(Image.open(io.BytesIO(downloaded(downloads, "seed-4242.png"))))
    assert png.shape == (G.image_size, G.image_size) + ((3,) if G.channels == 3 else ())
    assert np.array_equal(png, seed_pixels(run, 4242))
    page.click(driver, "download-z")
    z = np.load(io.BytesIO(downloaded(downloads, "seed-4242-z.npy")))
    assert np.array_equal(z, seed_noise([4242], G.latent_dim)[0].numpy())


@torch.no_grad()
def test_moving_a_slider_changes_the_image(driver, run, G):
    from selenium.webdriver.common.keys import Keys

    from dcgan.demo import latent_directions

    page.set_number(driver, "seed", 4242)
    page.click(driver, "reset")
    shows(driver, "#current-image img", [seed_pixels(run, 4242)], "the unsteered image of seed 4242")

    page.slider_keys(driver, "direction-1", Keys.END)
    page.wait_for(lambda: page.value_of(driver, "#direction-1 input[type=number]") == "3", what="slider 1 at 3")
    z = seed_noise([4242], G.latent_dim) + 3.0 * latent_directions(G)[0]
    steered = pixels(to_uint8(G(z))[0])
    assert not np.array_equal(steered, seed_pixels(run, 4242))
    shows(driver, "#current-image img", [steered], "the image steered along direction 1")


@torch.no_grad()
def test_walk_produces_its_frames_and_gif(driver, run, G):
    from PIL import Image

    page.set_number(driver, "seed-a", 5)
    page.set_number(driver, "seed-b", 9)
    page.click(driver, "walk")
    frames = to_uint8(G(walk(seed_noise([5, 9], G.latent_dim), 16, mode="slerp")))
    assert len(frames) == 17
    shows(driver, "#walk-frames img", [pixels(f) for f in frames], "the 17 frames of the walk from 5 to 9")

    gif_src = page.wait_for(
        lambda: [s for s in page.srcs(driver, "#walk-gif img") if s.endswith(".gif")], what="the walk's GIF"
    )[0]
    gif = Image.open(io.BytesIO(page.fetch(gif_src)))
    assert gif.n_frames == 17 + 15  # there and back, without repeating either end
    assert gif.size[0] >= 112 and gif.size[0] % G.image_size == 0

    if os.environ.get("DCGAN_DEMO_SCREENSHOT"):
        page.set_text(driver, "seeds", "0-15")
        shows(driver, "#grid img", [seed_pixels(run, s) for s in range(16)], "the grid of seeds 0-15")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, height)
        driver.execute_script("window.scrollTo(0, 0)")
        out = Path(os.environ["DCGAN_DEMO_SCREENSHOT"])
        out.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(out))
