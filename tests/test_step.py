"""step: one DCGAN step updates D then G with the algorithm's losses, each through its own optimizer."""

from __future__ import annotations

import copy

import torch
from torch import nn

from dcgan import Discriminator, Generator
from dcgan.data import to_model_range
from dcgan.losses import discriminator_loss, generator_loss, r1_penalty
from dcgan.runlog import STAT_NAMES
from dcgan.step import Logits, train_step


def tiny_setup(mnist5k, lr: float = 2e-4):
    G, D = Generator(width=8), Discriminator(width=8)
    opt_G = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    real = to_model_range(mnist5k.images[:8])
    z = torch.randn(8, 100)
    return G, D, opt_G, opt_D, real, z


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def spy_on_step(optimizer: torch.optim.Optimizer, record) -> None:
    """Call ``record()`` just before ``optimizer.step`` runs."""
    step = optimizer.step

    def spied(*args, **kwargs):
        record()
        return step(*args, **kwargs)

    optimizer.step = spied


# --------------------------------------------------------------------------- one step


def test_one_step_changes_both_networks_and_gives_finite_statistics(mnist5k):
    G, D, opt_G, opt_D, real, z = tiny_setup(mnist5k)
    G_before, D_before = snapshot(G), snapshot(D)
    stats = train_step(G, Logits(D), opt_G, opt_D, real, z)
    assert stats.shape == (len(STAT_NAMES),) and not stats.requires_grad
    assert torch.isfinite(stats).all()
    loss_D, loss_G, D_x, D_G_z_before, D_G_z_after = stats.tolist()
    assert loss_D > 0 and loss_G > 0
    assert all(0 < p < 1 for p in (D_x, D_G_z_before, D_G_z_after))
    # every parameter tensor of both networks moved (Adam's first step moves each by about lr)
    for name, p in G.named_parameters():
        assert not torch.equal(p, G_before[name]), f"G.{name} did not change"
        assert torch.isfinite(p).all()
    for name, p in D.named_parameters():
        assert not torch.equal(p, D_before[name]), f"D.{name} did not change"
        assert torch.isfinite(p).all()


def test_step_statistics_are_the_losses_of_the_algorithm(mnist5k):
    G, D, opt_G, opt_D, real, z = tiny_setup(mnist5k)
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    stats = train_step(G, Logits(D), opt_G, opt_D, real, z)
    # (1) D's loss and outputs are those of the networks before the step
    fake = G0(z)
    logits_real, logits_fake = D0.logits(real), D0.logits(fake)
    torch.testing.assert_close(stats[0], discriminator_loss(logits_real, logits_fake), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats[2], torch.sigmoid(logits_real).mean(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats[3], torch.sigmoid(logits_fake).mean(), rtol=1e-6, atol=1e-6)
    # (2) G is trained against the updated D (D's weights after the step, G's before)
    logits_after = D.logits(fake)
    torch.testing.assert_close(stats[1], generator_loss(logits_after), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats[4], torch.sigmoid(logits_after).mean(), rtol=1e-6, atol=1e-6)


def test_discriminator_step_sends_no_gradient_into_the_generator(mnist5k):
    G, D, opt_G, opt_D, real, z = tiny_setup(mnist5k)
    G0, D0 = copy.deepcopy(G), copy.deepcopy(D)
    at_D_step, at_G_step = {}, {}
    # the gradients that the D phase left behind, read at the moment opt_D steps
    spy_on_step(
        opt_D,
        lambda: at_D_step.update(
            G={k: p.grad for k, p in G.named_parameters()},
            D={k: None if p.grad is None else p.grad.clone() for k, p in D.named_parameters()},
        ),
    )
    spy_on_step(
        opt_G,
        lambda: at_G_step.update(
            G={k: p.grad.clone() for k, p in G.named_parameters()},
            D=copy.deepcopy(D),
        ),
    )
    train_step(G, Logits(D), opt_G, opt_D, real, z)

    assert all(g is None for g in at_D_step["G"].values()), "the D step put gradients into G"
    assert all(g is not None and g.abs().sum() > 0 for g in at_D_step["D"].values())
    # and the D gradients are exactly those of D's loss alone
    expected = torch.autograd.grad(
        discriminator_loss(D0.logits(real), D0.logits(G0(z).detach())), list(D0.parameters())
    )
    for (name, got), want in zip(at_D_step["D"].items(), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, msg=f"D.{name}")
    # G's update uses only G's loss against the updated D
    D1 = at_G_step["D"]
    expected = torch.autograd.grad(generator_loss(D1.logits(G0(z))), list(G0.parameters()))
    for (name, got), want in zip(at_G_step["G"].items(), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, msg=f"G.{name}")


def test_the_gradient_probe_would_catch_a_missing_detach(mnist5k):
    """The check above is meaningful: without .detach() the D phase does reach G."""
    G, D, _, _, real, z = tiny_setup(mnist5k)
    discriminator_loss(D.logits(real), D.logits(G(z))).backward()  # the bug: no detach
    assert all(p.grad is not None for p in G.parameters())


def test_each_network_changes_only_through_its_own_optimizer(mnist5k):
    G, D, opt_G, opt_D, real, z = tiny_setup(mnist5k)
    for group in opt_G.param_groups:
        group["lr"] = 0.0
    G_before, D_before = snapshot(G), snapshot(D)
    train_step(G, Logits(D), opt_G, opt_D, real, z)
    assert all(torch.equal(p, G_before[k]) for k, p in G.named_parameters())
    assert all(not torch.equal(p, D_before[k]) for k, p in D.named_parameters())

    G, D, opt_G, opt_D, real, z = tiny_setup(mnist5k)
    for group in opt_D.param_groups:
        group["lr"] = 0.0
    G_before, D_before = snapshot(G), snapshot(D)
    train_step(G, Logits(D), opt_G, opt_D, real, z)
    assert all(torch.equal(p, D_before[k]) for k, p in D.named_parameters())
    assert all(not torch.equal(p, G_before[k]) for k, p in G.named_parameters())


def test_the_r1_weight_adds_its_gradient_to_the_d_step(mnist5k):
    """With SGD (lr 1), the D update with R1 minus the one without is -weight * grad of the penalty."""
    G, D, _, _, real, z = tiny_setup(mnist5k)
    updates = []
    for weight in (0.0, 0.5):
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        before = snapshot(d)
        opt_G, opt_D = torch.optim.SGD(g.parameters(), lr=1.0), torch.optim.SGD(d.parameters(), lr=1.0)
        train_step(g, Logits(d), opt_G, opt_D, real, z, r1_weight=weight)
        updates.append({k: v.detach() - before[k] for k, v in d.named_parameters()})
    x = real.clone().requires_grad_(True)
    d = copy.deepcopy(D)
    d.train()
    grads = torch.autograd.grad(r1_penalty(d.logits(x), x), list(d.parameters()))
    for (name, _), grad in zip(d.named_parameters(), grads):
        torch.testing.assert_close(updates[1][name] - updates[0][name], -0.5 * grad, rtol=1e-4, atol=1e-6)
