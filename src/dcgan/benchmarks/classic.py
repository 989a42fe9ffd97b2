"""The classic DCGAN training loop of pytorch/examples, re-implemented as the baseline.

Used by ``dcgan bench`` (speed) and by the quality benchmark, and by the test
that shows the fast path computes the same thing. It keeps everything that
makes the classic loop what it is:

- a torchvision ``ImageFolder`` over image files, decoded by PIL per sample and
  transformed per sample (Resize, CenterCrop, ToTensor, Normalize) in a
  ``DataLoader`` with 2 worker processes, reshuffled every epoch;
- a discriminator that ends in ``nn.Sigmoid`` and is trained with ``nn.BCELoss``;
- separate backward passes for D on the real and on the fake batch;
- ``.item()`` on every statistic every step (a host synchronisation on a GPU);
- plain single-tensor ``torch.optim.Adam`` (no foreach, no fused), lr 2e-4,
  betas (0.5, 0.999).

The networks are the project's ``Generator`` and ``Discriminator`` layers, which
for 64x64 RGB with width 64 are exactly the classic architecture. Printing and
the sample grid every 100 steps are left to the caller (``baselines.py`` runs the loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..models import Discriminator, Generator


class ClassicDiscriminator(nn.Module):
    """The classic netD: the discriminator's layers followed by ``nn.Sigmoid``; output [B] probabilities.

    Shares its parameters with ``discriminator``, so both views train the same weights.
    """

    def __init__(self, discriminator: Discriminator) -> None:
        super().__init__()
        self.main = nn.Sequential(*discriminator.main, nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def classic_models(
    *, latent_dim: int = 100, channels: int = 3, image_size: int = 64, width: int = 64
) -> tuple[Generator, ClassicDiscriminator]:
    """netG and netD, initialised like the classic (N(0, 0.02) convs, N(1, 0.02) batch-norm weights)."""
    G = Generator(latent_dim=latent_dim, channels=channels, image_size=image_size, width=width)
    D = Discriminator(channels=channels, image_size=image_size, width=width)
    return G, ClassicDiscriminator(D)


def classic_optimizers(
    G: nn.Module, D: nn.Module, *, lr: float = 2e-4, beta1: float = 0.5
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Plain Adam for both players.

    ``foreach=False`` pins the single-tensor implementation: what the classic
    gets on the CPU by default, and what it got on the GPU before PyTorch made
    multi-tensor Adam the CUDA default.
    """
    betas = (beta1, 0.999)
    return (
        torch.optim.Adam(G.parameters(), lr=lr, betas=betas, foreach=False),
        torch.optim.Adam(D.parameters(), lr=lr, betas=betas, foreach=False),
    )


# --------------------------------------------------------------------------- data


class _PILLoader:
    """Open an image file and convert it to the model's mode ("L" or "RGB").

    The classic uses torchvision's default loader, which always converts to
    RGB; grayscale models need "L". A class so that DataLoader workers can pickle it.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, path: str):
        from PIL import Image

        with open(path, "rb") as f:
            return Image.open(f).convert(self.mode)


def classic_transform(channels: int, image_size: int):
    """The classic per-sample pipeline: PIL image -> float tensor in [-1, 1]."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(image_size),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize((0.5,) * channels, (0.5,) * channels),
        ]
    )


def classic_dataset(root: str, *, channels: int, image_size: int):
    """``torchvision.datasets.ImageFolder`` (one sub-folder per class) with the classic transforms."""
    import torchvision

    return torchvision.datasets.ImageFolder(
        root,
        transform=classic_transform(channels, image_size),
        loader=_PILLoader("L" if channels == 1 else "RGB"),
    )


def classic_loader(
    dataset, batch_size: int, *, num_workers: int = 2, shuffle: bool = True, sampler=None
) -> torch.utils.data.DataLoader:
    """The classic DataLoader: shuffled, 2 workers, no pinned memory, the last partial batch kept.

    ``sampler`` (which excludes ``shuffle``) lets a test replay a given order.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
    )


def classic_batches(loader: torch.utils.data.DataLoader, device: torch.device) -> Iterator[torch.Tensor]:
    """Real batches on ``device``, epoch after epoch (a new pass, and new workers, per epoch)."""
    while True:
        for images, _labels in loader:
            yield images.to(device)


# --------------------------------------------------------------------------- the step


@dataclass(frozen=True)
class ClassicStats:
    """What the classic prints every step, already on the host."""

    loss_D: float
    loss_G: float
    D_x: float
    D_G_z_before: float
    D_G_z_after: float


def classic_step(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    criterion: nn.Module | None = None,
    *,
    real_label: float = 1.0,
    fake_label: float = 0.0,
) -> ClassicStats:
    """One classic step. ``D`` outputs probabilities (a ``ClassicDiscriminator``); ``z`` is [B, latent_dim, 1, 1]."""
    criterion = criterion if criterion is not None else nn.BCELoss()
    labels = torch.full((real.size(0),), real_label, dtype=real.dtype, device=real.device)

    # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
    D.zero_grad()
    # the real batch: its own forward and backward pass
    prob_real = D(real)
    loss_D_real = criterion(prob_real, labels)
    loss_D_real.backward()
    D_x = prob_real.mean().item()
    # the fake batch: a second forward and backward pass; gradients add up in D
    fake = G(z)
    labels.fill_(fake_label)
    prob_fake = D(fake.detach())
    loss_D_fake = criterion(prob_fake, labels)
    loss_D_fake.backward()
    D_G_z_before = prob_fake.mean().item()
    loss_D = loss_D_real + loss_D_fake
    opt_D.step()

    # (2) Update G network: maximize log(D(G(z)))
    G.zero_grad()
    labels.fill_(real_label)  # G wants its fakes called real
    prob_fake_after = D(fake)
    loss_G = criterion(prob_fake_after, labels)
    loss_G.backward()
    D_G_z_after = prob_fake_after.mean().item()
    opt_G.step()

    return ClassicStats(loss_D.item(), loss_G.item(), D_x, D_G_z_before, D_G_z_after)


def classic_sample(G: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The classic's fixed-noise images: G left in train mode, autograd on, detached afterwards."""
    return G(z).detach()
