"""The generator's moving average: the warm-up of its decay, decay 0, and batch-norm recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcgan import Generator
from dcgan.ema import EMA, recalibrated


def _shifted(model: nn.Module, by: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(by)


@pytest.mark.parametrize(
    ("step", "decay", "effective"), [(0, 0.999, 0.1), (8, 0.999, 0.5), (10_000, 0.999, 0.999), (5, 0.3, 0.3)]
)
def test_decay_warms_up_then_holds(step, decay, effective):
    G = Generator(width=4, latent_dim=8)
    ema = EMA(G, decay)
    start = [p.detach().clone() for p in ema.model.parameters()]
    _shifted(G, 1.0)
    ema.update(G, step)
    for old, new, target in zip(start, ema.model.parameters(), G.parameters()):
        torch.testing.assert_close(new, effective * old + (1 - effective) * target)


def test_decay_zero_is_a_copy_of_the_generator():
    G = Generator(width=4, latent_dim=8)
    ema = EMA(G, 0.0)
    for step in range(3):
        _shifted(G, 0.5)
        G.train()(torch.randn(4, 8))  # moves the batch-norm running statistics too
        ema.update(G, step)
        for name, value in G.state_dict().items():
            assert torch.equal(ema.state_dict()[name], value), name


def test_buffers_are_copied_not_averaged():
    G = Generator(width=4, latent_dim=8)
    ema = EMA(G, 0.999)
    G.train()(torch.randn(16, 8))
    ema.update(G, 10_000)
    buffers = dict(G.named_buffers())
    for name, value in ema.model.named_buffers():
        assert torch.equal(value, buffers[name]), name


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        EMA(Generator(width=4), decay)


def test_recalibration_averages_the_batch_statistics_of_noise_batches():
    G = Generator(width=4, latent_dim=8)
    first_norm = next(m for m in G.modules() if isinstance(m, nn.BatchNorm2d))
    first_norm.running_mean.fill_(123.0)  # statistics that describe nothing
    before = {k: v.clone() for k, v in G.state_dict().items()}

    model = recalibrated(G, num_batches=3, batch_size=32, seed=5)

    assert not model.training
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())  # the original is untouched
    # by hand: the first batch norm's input is the first transposed convolution's output, and with
    # momentum None its running mean is the plain average of the per-batch means
    rng = torch.Generator().manual_seed(5)
    project = G.main[0]
    means = [project(torch.randn(32, 8, generator=rng)[:, :, None, None]).mean((0, 2, 3)) for _ in range(3)]
    recal_norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    torch.testing.assert_close(recal_norm.running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)


def test_recalibration_is_a_function_of_the_seed():
    G = Generator(width=4, latent_dim=8)
    z = torch.randn(4, 8)
    a, b = recalibrated(G, seed=1), recalibrated(G, seed=1)
    assert torch.equal(a(z), b(z))
    assert not torch.equal(recalibrated(G, seed=2)(z), a(z))
