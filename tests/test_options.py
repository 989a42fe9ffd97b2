"""options.resolve: one resolution, validated first, returning a frozen config the trainer never changes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dcgan.config import TrainConfig
from dcgan.errors import UserError
from dcgan.options import Resolved, given_options, resolve
from dcgan.train import Trainer

TINY = dict(
    g_width=8,
    d_width=8,
    batch_size=16,
    max_images=64,
    log_every_steps=2,
    sample_every_steps=2,
    checkpoint_every_steps=2,
    num_samples=16,
    device="cpu",
    num_workers=0,
    quiet=True,
    epochs=None,
)


def test_the_trainer_keeps_the_resolved_config_unchanged_through_a_run_and_a_resume(tmp_path):
    run_dir = tmp_path / "run"
    first = resolve(TrainConfig(steps=4, run_dir=str(run_dir), **TINY))
    before = first.cfg.to_dict()
    trainer = Trainer(first)
    trainer.run()
    assert trainer.cfg is first.cfg and first.cfg.to_dict() == before
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 4

    # a Python resume: no ``given``; what differs from the recipe counts as given, as flags do in the CLI
    second = resolve(TrainConfig(steps=6, epochs=None), resume=str(run_dir))
    before = second.cfg.to_dict()
    assert second.checkpoint["step"] == 4 and second.run_dir == run_dir
    assert (second.cfg.steps, second.cfg.g_width, second.cfg.batch_size) == (6, 8, 16)  # checkpoint's widths
    trainer = Trainer(second)
    trainer.run()
    assert trainer.step == 6 and trainer.cfg is second.cfg and second.cfg.to_dict() == before


def test_the_config_is_frozen():
    cfg = resolve(TrainConfig(steps=1, run_dir="never-made")).cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 2


def test_resolve_fills_the_size_dependent_defaults_and_never_changes_its_argument(tmp_path):
    given = TrainConfig(steps=1, image_size=64, channels=3)
    resolved = resolve(given)
    assert given.g_width is None and given.d_width is None and given.run_dir is None  # untouched
    assert (resolved.cfg.g_width, resolved.cfg.d_width) == (32, 16)  # the 64x64 defaults (config.default_widths)
    assert resolved.cfg.run_dir.startswith("runs/mnist-5k-64px-")
    assert isinstance(resolved, Resolved) and resolved.checkpoint is None


def test_validation_comes_before_the_device_and_any_file(tmp_path):
    # an unknown device would fail in choose_device; the bad value must be reported first
    with pytest.raises(UserError, match="--batch-size must be at least 1"):
        resolve(
            TrainConfig(batch_size=0, device="cuda:7", run_dir=str(tmp_path / "run")), resume=str(tmp_path / "missing")
        )
    assert not (tmp_path / "run").exists()


def test_a_python_resume_refuses_a_different_architecture(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(resolve(TrainConfig(steps=2, run_dir=str(run_dir), **TINY))).run()
    with pytest.raises(UserError, match="was trained with g_width=8, but --g-width 16 was given"):
        resolve(TrainConfig(steps=4, epochs=None, g_width=16), resume=str(run_dir))


def test_given_options_are_the_fields_that_differ_from_the_recipe():
    assert given_options(TrainConfig()) == set()
    assert given_options(TrainConfig(steps=3, epochs=None)) == {"steps", "epochs"}
    assert given_options(TrainConfig.for_recipe("paper", seed=2)) == {"seed"}


def test_a_new_run_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("keep")
    with pytest.raises(UserError, match="already exists"):
        resolve(TrainConfig(steps=1, run_dir=str(tmp_path / "run")))
    assert (tmp_path / "run" / "x").read_text() == "keep"


# --------------------------------------------------------------------------- the data's own shape


@pytest.mark.parametrize(
    "size, mode, expected",
    [
        ((28, 28), "L", (28, 1)),
        ((32, 32), "RGB", (32, 3)),
        ((64, 64), "RGB", (64, 3)),
        ((178, 218), "RGB", (64, 3)),
        ((100, 100), "L", (64, 1)),
        ((32, 32), "P", (32, 3)),
    ],
)
def test_a_folder_trains_at_its_images_own_size_and_mode(tmp_path, size, mode, expected):
    from PIL import Image

    (tmp_path / "b").mkdir()
    Image.new(mode, size).save(tmp_path / "b" / "x.png")
    Image.new("RGB", (256, 256)).save(tmp_path / "z.png")  # read after b/x.png, as the training reads them
    got = resolve(TrainConfig(data="folder", data_root=str(tmp_path), run_dir=str(tmp_path / "run"))).cfg
    assert (got.image_size, got.channels) == expected
    typed = TrainConfig(data="folder", data_root=str(tmp_path), image_size=32, channels=1, run_dir=str(tmp_path / "b2"))
    given = resolve(typed, given={"data", "data_root", "image_size", "channels", "run_dir"}).cfg  # as the CLI passes
    assert (given.image_size, given.channels) == (32, 1)


def test_named_data_trains_at_its_own_shape_unless_given(tmp_path):
    cfg = resolve(TrainConfig(data="cifar10", run_dir=str(tmp_path / "a"))).cfg
    assert (cfg.image_size, cfg.channels) == (32, 3)
    cfg = resolve(TrainConfig(data="cifar10", image_size=64, run_dir=str(tmp_path / "b"))).cfg
    assert (cfg.image_size, cfg.channels) == (64, 3)
    cfg = resolve(TrainConfig(data="mnist", run_dir=str(tmp_path / "c"))).cfg
    assert (cfg.image_size, cfg.channels) == (28, 1)
    cfg = resolve(TrainConfig(data="fake", image_size=32, run_dir=str(tmp_path / "d"))).cfg
    assert (cfg.image_size, cfg.channels) == (32, 1)  # fake images take any shape: the config's


@pytest.mark.parametrize(
    "data, size, widths",
    [("mnist-5k", 28, (64, 16)), ("mnist", 28, (64, 16)), ("fashion-mnist", 28, (64, 32)), ("cifar10", 28, (64, 32)),
     ("cifar10", 32, (32, 32)), ("folder", 64, (32, 16)), ("folder", 128, (64, 64))],
)  # fmt: skip
def test_default_widths_by_size_and_at_28_by_whether_the_data_are_digits(data, size, widths):
    # a D of 16 at 28x28 sat at chance on CIFAR-10 in grey (docs/colour.md): only digits get it
    cfg = TrainConfig(data=data, image_size=size, channels=1 if size == 28 else 3).resolved()
    assert (cfg.g_width, cfg.d_width) == widths
    explicit = TrainConfig(data="cifar10", image_size=28, d_width=16).resolved()
    assert explicit.d_width == 16  # given widths are kept
