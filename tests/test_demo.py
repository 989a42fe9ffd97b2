"""The demo page's computations and its command line, without a browser (tests/test_demo_browser.py drives the page)."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
import torch
from torch import nn

from dcgan.cli import main
from dcgan.data import to_uint8
from dcgan.demo import (
    GIF_MIN_SIDE_PX,
    MAX_GRID_SEEDS,
    Actions,
    DemoModel,
    check_address,
    check_seed,
    grid_seeds,
    is_loopback,
    latent_directions,
    write_gif,
)
from dcgan.errors import UserError
from dcgan.latent import seed_noise, walk
from dcgan.models import Generator


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    return Generator(latent_dim=16, width=8).eval()


@pytest.fixture(scope="module")
def model(G) -> DemoModel:
    return DemoModel(G, directions=latent_directions(G, num_directions=3, num_probes=256))


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_train) -> str:
    run_dir = tmp_path_factory.mktemp("demo-cli") / "run"
    assert main(["train", *tiny_train, "--run-dir", str(run_dir)]) == 0
    return str(run_dir)


@torch.no_grad()
def test_seed_image_is_the_seed_computation(G, model):
    for seed in (0, 7, 123456789):
        expected = to_uint8(G(seed_noise([seed], G.latent_dim)))[0]
        assert torch.equal(model.seed_image(seed), expected)
    grid = model.seed_images([7, 0])
    assert torch.equal(grid[0], model.seed_image(7)) and torch.equal(grid[1], model.seed_image(0))
    assert grid[0].dtype == torch.uint8 and grid[0].shape == (1, 28, 28)


def test_steering_moves_z_by_the_offsets_along_the_directions(model):
    z0 = seed_noise([5], 16)[0]
    assert torch.equal(model.steered_z(5, [0.0, 0.0, 0.0]), z0)
    moved = model.steered_z(5, [1.5, 0.0, -2.0])
    torch.testing.assert_close(model.directions @ (moved - z0), torch.tensor([1.5, 0.0, -2.0]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        model.steered_z(5, [1.0])


@torch.no_grad()
def test_directions_are_orthonormal_and_fixed(G):
    u = latent_directions(G, num_directions=4, num_probes=256)
    assert u.shape == (4, 16)
    torch.testing.assert_close(u @ u.T, torch.eye(4), atol=1e-5, rtol=0)
    assert torch.equal(u, latent_directions(G, num_directions=4, num_probes=256))


class _Linear(nn.Module):
    """A 'generator' x = A z with known singular directions: the top ones are what the sliders must find."""

    def __init__(self, latent_dim: int, pixels: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        left = torch.linalg.qr(torch.randn(pixels, latent_dim, generator=g)).Q
        self.right = torch.linalg.qr(torch.randn(latent_dim, latent_dim, generator=g)).Q
        strengths = torch.tensor([8.0, 5.0, 3.0] + [0.5] * (latent_dim - 3))
        self.A = nn.Parameter(left @ torch.diag(strengths) @ self.right.T, requires_grad=False)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T


def test_directions_are_the_principal_directions_of_a_linear_generator():
    lin = _Linear(12, 50)
    u = latent_directions(lin, num_directions=3, num_probes=4096)
    # each found direction lines up with the true one (up to sign), in order of strength
    alignment = (u @ lin.right[:, :3]).abs().diagonal()
    assert torch.all(alignment > 0.99), alignment


@torch.no_grad()
def test_walk_images_are_the_slerp_walk(G, model):
    images = model.walk_images(3, 8, 6)
    assert images.shape == (7, 1, 28, 28)
    assert torch.equal(images, to_uint8(G(walk(seed_noise([3, 8], 16), 6, mode="slerp"))))


def test_gif_plays_there_and_back_enlarged(model, tmp_path):
    from PIL import Image

    frames = model.walk_images(0, 1, 4)
    write_gif(frames, tmp_path / "w.gif")
    gif = Image.open(tmp_path / "w.gif")
    assert gif.n_frames == 5 + 3 and gif.size == (GIF_MIN_SIDE_PX, GIF_MIN_SIDE_PX)  # 28 x 4
    gif.seek(2)
    third = np.asarray(gif.convert("L"))[::4, ::4]
    assert np.array_equal(third, frames[2, 0].numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["w.gif"]  # no temp file left behind


def test_steer_writes_the_image_and_its_z(model, tmp_path):
    from PIL import Image

    act = Actions(model, tmp_path)
    image, png, npy = act.steer(9, None, 0.0, 0.0, 0.0)
    assert (png, npy) == (str(tmp_path / "seed-9.png"), str(tmp_path / "seed-9-z.npy"))
    assert np.array_equal(np.asarray(Image.open(png)), model.seed_image(9)[0].numpy())
    assert np.array_equal(np.asarray(image), model.seed_image(9)[0].numpy())
    assert np.array_equal(np.load(npy), seed_noise([9], 16)[0].numpy())

    image, png, npy = act.steer(9, None, 2.0, 0.0, -1.0)
    z = np.load(npy)
    assert "steered" in png and np.array_equal(z, model.steered_z(9, [2.0, 0.0, -1.0]).numpy())
    # the z file reproduces the image it came with
    assert np.array_equal(np.asarray(Image.open(png)), model.images(torch.from_numpy(z)[None])[0, 0].numpy())

    gallery, seeds = act.grid("4,2")
    assert seeds == [4, 2] and [caption for _, caption in gallery] == ["seed 4", "seed 2"]
    text, gallery, seeds = act.reroll("0-5")
    assert len(seeds) == 6 and text == f"{seeds[0]}-{seeds[-1]}" and len(gallery) == 6
    gallery, gif, _ = act.walk(1, 2, 3)
    assert len(gallery) == 4 and gif.endswith(".gif")


class _Conditional(nn.Module):
    """Stands in for a class-conditional generator G(z, labels) to check the label reaches it."""

    latent_dim, channels, image_size = 4, 1, 2

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.1), requires_grad=False)

    def forward(self, z, labels):
        return torch.tanh(self.scale * (z[:, :4].sum(1) + labels))[:, None, None, None].expand(-1, 1, 2, 2)


def test_the_class_reaches_a_conditional_generator():
    cond = DemoModel(_Conditional(), directions=torch.eye(4)[:2], num_classes=10)
    a, b = cond.seed_image(1, 3), cond.seed_image(1, 4)
    assert not torch.equal(a, b)
    for bad in (None, -1, 10):
        with pytest.raises(UserError):
            cond.seed_image(1, bad)


@pytest.mark.parametrize("bad", [None, float("nan"), -1, 1.5, 2**53])
def test_bad_seeds_are_user_errors(bad):
    with pytest.raises(UserError):
        check_seed(bad)


def test_grid_seeds():
    assert grid_seeds("3,10-12") == [3, 10, 11, 12]
    with pytest.raises(UserError, match=f"at most {MAX_GRID_SEEDS}"):
        grid_seeds(f"0-{MAX_GRID_SEEDS}")


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_busy_port_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UserError, match="cannot listen"):
            check_address("127.0.0.1", s.getsockname()[1])


def _one_line_error(capsys, argv, match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert match in err, err


def test_cli_mistakes_are_one_line(capsys, run, tmp_path):
    pytest.importorskip("gradio")
    _one_line_error(capsys, ["demo", str(tmp_path / "nope")], "checkpoint not found")
    _one_line_error(capsys, ["demo", run, "--port", "70000"], "--port must be between 1 and 65535")
    _one_line_error(capsys, ["demo", run, "--port", "x"], "invalid int value")
    _one_line_error(capsys, ["demo", run, "--host", "no-such-host.invalid"], "--host no-such-host.invalid")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        _one_line_error(capsys, ["demo", run, "--port", str(s.getsockname()[1])], "cannot listen on 127.0.0.1:")


def test_a_conditional_run_serves_every_class_as_sample_draws_it(tmp_path, tiny_train):
    run = tmp_path / "cond"
    assert main(["train", "--conditional", *tiny_train, "--max-images", "128", "--run-dir", str(run)]) == 0

    G = Generator.from_checkpoint(run, torch.device("cpu"))
    model = DemoModel(G, directions=latent_directions(G), num_classes=10)
    assert main(["sample", str(run), "--seeds", "5", "--class", "3", "-o", str(tmp_path / "s.npz")]) == 0
    assert np.array_equal(model.seed_image(5, 3).permute(1, 2, 0).numpy(), np.load(tmp_path / "s.npz")["images"][0])
    assert not torch.equal(model.seed_image(5, 3), model.seed_image(5, 4))


def test_missing_gradio_names_the_extra(capsys, run, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    _one_line_error(capsys, ["demo", run], "pip install 'dcgan[demo]'")
