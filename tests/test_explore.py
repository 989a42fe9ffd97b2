"""After training: seed grids, latent walks, vector arithmetic and the progress GIF, through ``dcgan.cli.main``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cli import main
from dcgan.data import to_uint8
from dcgan.errors import UserError
from dcgan.explore import labelled_grid, parse_expression, seed_images, walk_latents
from dcgan.latent import seed_noise, slerp, walk
from dcgan.models import Generator

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_train):
    run = tmp_path_factory.mktemp("explore") / "run"
    assert main(["train", *tiny_train, "--run-dir", str(run)]) == 0
    return run


def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert "Traceback" not in captured.err
    return captured.err


def frames_of(path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("L")))
    return frames


# --------------------------------------------------------------------------- seeds


def test_sample_seeds_is_the_generator_on_seed_noise_whatever_the_batch(run_dir, tmp_path):
    G = Generator.from_checkpoint(run_dir, CPU)
    seeds = list(range(10))
    with torch.no_grad():  # each seed alone: G(seed_noise([s]))
        expected = torch.cat([to_uint8(G(seed_noise([s], G.latent_dim))) for s in seeds])
    assert torch.equal(seed_images(G, seeds), expected)
    assert torch.equal(seed_images(G, seeds[::-1]), expected.flip(0)), "order does not matter"
    assert torch.equal(seed_images(G, [0, 5, 1000, 9])[[1, 3]], expected[[5, 9]]), "other seeds do not matter"

    assert main(["sample", str(run_dir), "--seeds", "0-9", "-o", str(tmp_path / "s.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "s.npz") as f:
        assert f["seeds"].tolist() == seeds
        assert np.array_equal(f["images"], expected.permute(0, 2, 3, 1).numpy())

    assert main(["sample", str(run_dir), "--seeds", "3,7-8", "-o", str(tmp_path / "each"), "--device", "cpu"]) == 0
    files = sorted(p.name for p in (tmp_path / "each").iterdir())
    assert files == ["seed000003.png", "seed000007.png", "seed000008.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "each" / "seed000007.png")), expected[7, 0].numpy())


def test_seed_grid_holds_each_image_with_its_label(run_dir, tmp_path):
    out = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "--seeds", "0-5", "-o", str(out), "--device", "cpu"]) == 0
    G = Generator.from_checkpoint(run_dir, CPU)
    images = seed_images(G, list(range(6)))
    grid = np.asarray(Image.open(out))
    # 3 per row, 28 px cells with a 2 px border and a 14 px label strip under each row
    assert grid.shape == (2 + 2 * (28 + 14 + 2), 2 + 3 * 30)
    assert np.array_equal(grid[2:30, 32:60], images[1, 0].numpy())
    label_strip = grid[30:44, 2:30]
    assert label_strip.max() > 100, "the seed number is drawn under its image"
    unlabelled = np.asarray(labelled_grid(images, nrow=3))
    assert unlabelled.shape == (2 + 2 * 30, 2 + 3 * 30)


def test_seed_errors_are_one_line(run_dir, capsys, tmp_path):
    assert "bad seed list" in one_line_error(capsys, ["sample", str(run_dir), "--seeds", "a-b"])
    assert "bad seed range" in one_line_error(capsys, ["sample", str(run_dir), "--seeds", "9-3"])
    (tmp_path / "file").write_text("keep")
    assert "is a file" in one_line_error(
        capsys, ["sample", str(run_dir), "--seeds", "1", "-o", str(tmp_path / "file" / "x.png")]
    )
    assert (tmp_path / "file").read_text() == "keep"


# --------------------------------------------------------------------------- walks


def test_walk_png_is_the_generator_along_the_slerp_path(run_dir, tmp_path):
    out = tmp_path / "walk.png"
    assert (
        main(["interpolate", str(run_dir), "--seeds", "3,7,12", "--frames", "4", "-o", str(out), "--device", "cpu"])
        == 0
    )
    G = Generator.from_checkpoint(run_dir, CPU)
    z = walk(seed_noise([3, 7, 12], G.latent_dim), 4, mode="slerp")
    assert len(z) == 9
    assert torch.allclose(z[0], seed_noise([3], 100)[0]) and torch.allclose(z[-1], seed_noise([12], 100)[0])
    with torch.no_grad():
        expected = to_uint8(G(z))
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 + 3 * 30, 2 + 4 * 30)  # 9 frames, 4 per row
    for i in range(9):
        r, c = divmod(i, 4)
        assert np.array_equal(grid[2 + 30 * r : 30 + 30 * r, 2 + 30 * c : 30 + 30 * c], expected[i, 0].numpy())


def test_walk_gif_loops_back_and_has_every_frame(run_dir, tmp_path):
    out = tmp_path / "walk.gif"
    assert (
        main(
            [
                "interpolate",
                str(run_dir),
                "--seeds",
                "3,7",
                "--frames",
                "5",
                "--loop",
                "-o",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    G = Generator.from_checkpoint(run_dir, CPU)
    z = walk(seed_noise([3, 7], G.latent_dim), 5, mode="slerp", loop=True)
    with torch.no_grad():
        expected = to_uint8(G(z))[:, 0].numpy()
    frames = frames_of(out)
    assert len(frames) == 10  # 2 legs of 5, the loop ends one frame before seed 3 again
    assert all(np.array_equal(f, e) for f, e in zip(frames, expected)), "grey frames are stored exactly"
    midway = slerp(seed_noise([3], 100)[0], seed_noise([7], 100)[0], torch.tensor([0.4]))[0]
    assert torch.allclose(z[2], midway)


def test_direction_walk_moves_each_seed_along_one_unit_vector():
    z = walk_latents([1, 2], 100, frames=5, direction_seed=9, distance=4.0)
    assert z.shape == (5, 2, 100)
    u = seed_noise([9], 100)[0]
    u = u / u.norm()
    assert torch.allclose(z[2], seed_noise([1, 2], 100), atol=1e-6), "the seed itself is midway"
    assert torch.allclose(z[4] - z[0], (8.0 * u).expand(2, -1), atol=1e-5)
    assert walk_latents([1], 100, frames=5, direction_seed=9, loop=True).shape == (8, 1, 100)


def test_mp4_needs_imageio_ffmpeg_or_says_which_extra(run_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "walk.mp4"
    import importlib.util

    if importlib.util.find_spec("imageio_ffmpeg") is None:
        assert "pip install 'dcgan[video]'" in one_line_error(
            capsys, ["interpolate", str(run_dir), "--seeds", "1,2", "-o", str(out), "--device", "cpu"]
        )
        return
    assert (
        main(["interpolate", str(run_dir), "--seeds", "1,2", "--frames", "4", "-o", str(out), "--device", "cpu"]) == 0
    )
    assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
    assert "pip install 'dcgan[video]'" in one_line_error(
        capsys, ["interpolate", str(run_dir), "--seeds", "1,2", "-o", str(tmp_path / "b.mp4"), "--device", "cpu"]
    )
    assert not (tmp_path / "b.mp4").exists()


def test_walk_errors_are_one_line(run_dir, capsys, tmp_path):
    base = ["interpolate", str(run_dir), "--device", "cpu"]
    assert "at least two seeds" in one_line_error(capsys, [*base, "--seeds", "3"])
    assert "--frames" in one_line_error(capsys, [*base, "--seeds", "3,4", "--frames", "1"])
    assert "must end in" in one_line_error(capsys, [*base, "--seeds", "3,4", "-o", str(tmp_path / "w.jpg")])
    (tmp_path / "d.gif").mkdir()
    assert "is an existing folder" in one_line_error(capsys, [*base, "--seeds", "3,4", "-o", str(tmp_path / "d.gif")])
    assert "invalid choice" in one_line_error(capsys, [*base, "--seeds", "3,4", "--mode", "cubic"])
    assert "checkpoint not found" in one_line_error(capsys, ["interpolate", str(tmp_path / "nope"), "--seeds", "1,2"])


# --------------------------------------------------------------------------- arithmetic


def test_parse_expression():
    assert parse_expression("12 - 40 + 7") == [(1, [12]), (-1, [40]), (1, [7])]
    assert parse_expression("-3+[1,4-5]") == [(-1, [3]), (1, [1, 4, 5])]
    for bad in ("12 40", "12 - - 40", "12 +", "", "12 * 3", "[1,2"):
        with pytest.raises(UserError):
            parse_expression(bad)


def test_arithmetic_grid_shows_operands_and_their_sum(run_dir, tmp_path, capsys):
    out = tmp_path / "a.png"
    assert (
        main(["arithmetic", str(run_dir), "[1,2,3] - 40 + 7", "-o", str(out), "--scale", "1", "--device", "cpu"]) == 0
    )
    G = Generator.from_checkpoint(run_dir, CPU)
    group = seed_noise([1, 2, 3], 100).mean(0)
    vectors = torch.stack([group, seed_noise([40], 100)[0], seed_noise([7], 100)[0]])
    result = group - vectors[1] + vectors[2]
    with torch.no_grad():
        expected = to_uint8(G(torch.cat([vectors, result[None]])))
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 + 28 + 14 + 2, 2 + 4 * 30)
    for i in range(4):
        assert np.array_equal(grid[2:30, 2 + 30 * i : 30 + 30 * i], expected[i, 0].numpy())
    assert "missing + or -" in one_line_error(capsys, ["arithmetic", str(run_dir), "1 2", "-o", str(out)])


# --------------------------------------------------------------------------- the progress GIF


def test_training_writes_the_progress_gif_and_animate_rebuilds_it(run_dir, tmp_path, capsys):
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    assert [p.name for p in grids] == ["step_0000002.png", "step_0000004.png"]
    gif = run_dir / "samples" / "progress.gif"
    frames = frames_of(gif)
    assert len(frames) == 2
    for frame, grid in zip(frames, grids):
        assert np.array_equal(frame, np.asarray(Image.open(grid).convert("L")))

    before = gif.read_bytes()
    gif.unlink()
    assert main(["animate", str(run_dir)]) == 0
    assert gif.read_bytes() == before
    assert main(["animate", str(run_dir), "-o", str(tmp_path / "one.gif"), "--max-frames", "1"]) == 0
    only = frames_of(tmp_path / "one.gif")
    assert len(only) == 1 and np.array_equal(only[0], frames[-1]), "always ends on the last grid"
    assert "not a run directory" in one_line_error(capsys, ["animate", str(tmp_path)])
    (tmp_path / "run" / "samples").mkdir(parents=True)
    assert "no sample grids" in one_line_error(capsys, ["animate", str(tmp_path / "run")])


def test_a_stopped_run_also_gets_its_gif(tmp_path, tiny_train):
    import signal

    from dcgan.config import TrainConfig
    from dcgan.train import Trainer

    cfg = TrainConfig(
        g_width=8,
        d_width=8,
        batch_size=16,
        max_images=64,
        steps=50,
        sample_every_steps=2,
        log_every_steps=2,
        checkpoint_every_steps=100,
        num_samples=4,
        device="cpu",
        num_workers=0,
        quiet=True,
        run_dir=str(tmp_path / "run"),
    )
    trainer = Trainer(cfg)
    original = trainer._step

    def step_then_interrupt(*args):
        if trainer.step == 3:
            signal.raise_signal(signal.SIGINT)
        return original(*args)

    trainer._step = step_then_interrupt
    trainer.run()
    assert trainer.stop_reason == "SIGINT" and trainer.step == 4
    assert len(frames_of(tmp_path / "run" / "samples" / "progress.gif")) == 2


@pytest.mark.parametrize("command", ["interpolate", "arithmetic", "animate", "export", "nearest", "stats"])
def test_every_new_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: dcgan {command}")
