"""checkpoint.py: the one schema, written and read back through its accessors only."""

from __future__ import annotations

import pytest
import torch

from dcgan import checkpoint as ckpt
from dcgan.errors import UserError


def _state(**overrides) -> dict:
    weights = {"w": torch.arange(3.0)}
    values = dict(
        config={"batch_size": 16, "seed": 3},
        G=weights,
        D={"d": torch.ones(2)},
        G_ema={"w": torch.zeros(3)},
        opt_G={"state": {}, "param_groups": []},
        opt_D={"state": {}, "param_groups": []},
        scaler_G={},
        scaler_D={},
        step=12,
        epoch=2,
        images_in_epoch=64,
        stats_sum=torch.ones(5),
        stats_count=4,
        fixed_noise=torch.zeros(2, 3),
        rng={"torch": torch.get_rng_state()},
        noise_rng=torch.Generator().get_state(),
        world_size=2,
        best_fid=3.5,
        train_seconds=9.0,
    )
    return ckpt.training_state(**{**values, **overrides})


def test_a_training_state_round_trips_and_every_accessor_reads_it(tmp_path):
    path = tmp_path / "run" / "checkpoints" / ckpt.LATEST
    ckpt.save(_state(), path)
    state = ckpt.load_training(tmp_path / "run")  # a run directory means its latest.pt
    assert ckpt.config_of(state) == {"batch_size": 16, "seed": 3} and ckpt.step_of(state) == 12
    assert torch.equal(ckpt.generator_weights(state)["w"], torch.zeros(3))  # the EMA where there is one
    assert torch.equal(ckpt.generator_weights(state, ema=False)["w"], torch.arange(3.0))
    assert ckpt.images_seen(state) == 12 * 16 * 2  # steps x batch x processes
    assert ckpt.train_seconds(state) == 9.0 and ckpt.world_size(state) == 2 and ckpt.missing(state) == []
    nets = ckpt.networks(state)
    assert set(nets._fields) == set(ckpt.NETWORKS) and torch.equal(nets.D["d"], torch.ones(2))
    where = ckpt.progress(state)
    assert (where.step, where.epoch, where.images_in_epoch, where.best_fid) == (12, 2, 64, 3.5)
    assert ckpt.optimizer_states(state).scaler_G == {}


def test_a_baseline_generator_has_no_ema_and_counts_its_own_images(tmp_path):
    state = ckpt.generator_state(
        config={"batch_size": 64}, G={"w": torch.ones(1)}, step=5, images_seen=300, train_seconds=1.0, stop_reason="x"
    )
    assert not ckpt.has_ema(state) and torch.equal(ckpt.generator_weights(state)["w"], torch.ones(1))
    assert ckpt.images_seen(state) == 300  # its own count, not 5 x 64
    assert ckpt.networks(state) is None and ckpt.missing(state) == ["D", "G_ema"]


def test_older_checkpoints_take_the_defaults_of_what_they_predate():
    state = _state()
    for key in ("best_fid", "train_seconds", "world_size"):
        del state[key]
    where = ckpt.progress(state)
    assert where.best_fid == float("inf") and where.train_seconds == 0.0 and ckpt.world_size(state) == 1


@pytest.mark.parametrize("drop", ["config", "G"])
def test_a_training_checkpoint_without_its_config_or_g_is_one_line(tmp_path, drop):
    state = _state()
    del state[drop]
    ckpt.save(state, tmp_path / "c.pt")
    with pytest.raises(UserError, match=f"without its {drop}"):
        ckpt.load_training(tmp_path / "c.pt")
