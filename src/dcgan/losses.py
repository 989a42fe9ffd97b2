"""The DCGAN objectives: binary cross-entropy for both players, on logits.

BCE-with-logits is the same loss as Sigmoid + BCELoss, but numerically stable
(no log(0) when D saturates) and allowed under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """D learns real -> 1 and fake -> 0: minimise -[log D(x) + log(1 - D(G(z)))].

    ``real_target`` below 1 is one-sided label smoothing (Salimans et al., 2016).
    The two halves are averaged separately and summed, as in pytorch/examples.
    """
    loss_real = F.binary_cross_entropy_with_logits(logits_real, torch.full_like(logits_real, real_target))
    loss_fake = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return loss_real + loss_fake


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """G learns to make D call its fakes real: minimise -log D(G(z)) (the non-saturating loss)."""
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))


def r1_penalty(logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D's logits at the real images (Mescheder et al., 2018).

    A stabiliser on top of the BCE objective, not a replacement: it keeps D from growing
    steep around the data, where a steep D hands G exploding or vanishing gradients.
    ``real`` must have been given ``requires_grad`` before the forward pass.
    """
    (grad,) = torch.autograd.grad(logits_real.float().sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
