"""An exponential moving average of the generator, and batch-norm statistics that match it.

The averaged weights never ran a forward pass in training, so the running
batch-norm statistics copied from G do not describe their activations.
``recalibrated`` re-estimates them (a cumulative average over a few batches of
noise in train mode, then eval mode) on a copy, leaving the EMA itself, and
so exact resume, untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * G`` after every step; buffers are copied from G.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` so the average
    does not remember the random initialisation for thousands of steps.
    ``decay=0`` makes it a plain copy of G.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


@torch.no_grad()
def recalibrated(generator: nn.Module, *, num_batches: int = 16, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """An eval-mode copy of ``generator`` whose batch-norm statistics are re-estimated on noise."""
    model = copy.deepcopy(generator)
    device = next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    rng = torch.Generator(device=device).manual_seed(seed)
    num_classes = getattr(model, "num_classes", 0)
    labels = torch.arange(batch_size, device=device) % num_classes if num_classes else None  # every class alike
    for _ in range(num_batches):
        z = torch.randn(batch_size, model.latent_dim, device=device, generator=rng)
        model(z) if labels is None else model(z, labels)
    return model.eval()
