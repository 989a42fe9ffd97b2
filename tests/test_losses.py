"""losses: the DCGAN losses equal sigmoid + BCE, stay exact where the sigmoid saturates; the R1 penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dcgan.losses import discriminator_loss, generator_loss, r1_penalty


def test_losses_equal_sigmoid_plus_bce():
    logits_real, logits_fake = torch.randn(16, 1) * 3, torch.randn(16, 1) * 3
    bce = nn.BCELoss()
    p_real, p_fake = torch.sigmoid(logits_real), torch.sigmoid(logits_fake)
    ones, zeros = torch.ones(16, 1), torch.zeros(16, 1)
    torch.testing.assert_close(discriminator_loss(logits_real, logits_fake), bce(p_real, ones) + bce(p_fake, zeros))
    torch.testing.assert_close(generator_loss(logits_fake), bce(p_fake, ones))
    # one-sided label smoothing: only the real target moves
    torch.testing.assert_close(
        discriminator_loss(logits_real, logits_fake, real_target=0.9),
        bce(p_real, torch.full((16, 1), 0.9)) + bce(p_fake, zeros),
    )


def test_loss_gradients_equal_sigmoid_plus_bce():
    logits = torch.randn(8, 1, requires_grad=True)
    (ours,) = torch.autograd.grad(generator_loss(logits), logits)
    (classic,) = torch.autograd.grad(nn.BCELoss()(torch.sigmoid(logits), torch.ones(8, 1)), logits)
    torch.testing.assert_close(ours, classic)
    torch.testing.assert_close(ours, (torch.sigmoid(logits) - 1).detach() / 8)  # d/dl of -log sigmoid(l)


def test_losses_stay_exact_where_the_sigmoid_saturates():
    # BCELoss on probabilities clamps log at -100; on logits the loss keeps its true value
    assert generator_loss(torch.tensor([[-200.0]])).item() == pytest.approx(200.0, rel=1e-6)
    assert discriminator_loss(torch.tensor([[-150.0]]), torch.tensor([[50.0]])).item() == pytest.approx(200.0, rel=1e-6)
    assert discriminator_loss(torch.tensor([[40.0]]), torch.tensor([[-40.0]])).item() == pytest.approx(
        2 * math.log1p(math.exp(-40.0)), rel=1e-6
    )


def test_r1_penalty_of_a_linear_critic_is_its_squared_weight_norm():
    D = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    x = torch.randn(5, 1, 4, 4, requires_grad=True)
    penalty = r1_penalty(D(x), x)
    torch.testing.assert_close(penalty, D[1].weight.pow(2).sum())
