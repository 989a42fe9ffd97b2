"""The DCGAN generator and discriminator (Radford, Metz and Chintala, 2016).

Only ``nn`` code lives here; nothing imports from training. Both networks take
their sizes as keyword arguments. With no arguments they are the 28x28
grayscale contract; with ``channels=3, image_size=64, width=64`` they are
exactly the classic architecture of the pytorch/examples DCGAN.

Class-conditional models are a keyword away (``num_classes=K``): the generator reads its label as
a one-hot vector concatenated to ``z`` (Mirza and Osindero, 2014), so its first transposed
convolution learns one offset per class; the discriminator is a projection discriminator (Miyato and
Koyama, 2018) whose final convolution gets a learned class kernel added, the inner product of a
class embedding with its last feature map. Both stay DCGAN: the same layers, batch norm and
activations; ``num_classes=0`` (the default) is exactly the unconditional network.

Spatial plan: 28x28 grows from 7x7, every power of two from 4x4, doubling at
each transposed convolution. The feature maps halve as the image doubles and
end at ``width`` just before the output layer (the discriminator mirrors it).
"""

from __future__ import annotations

import torch
from torch import nn

SUPPORTED_IMAGE_SIZES = (28, 32, 64, 128, 256)
SUPPORTED_CHANNELS = (1, 3)


def _check_classes(num_classes: int) -> None:
    if num_classes < 0 or num_classes == 1:
        raise ValueError(f"num_classes must be 0 (unconditional) or at least 2, got {num_classes}")


def _check_labels(y: torch.Tensor | None, num_classes: int, batch: int, who: str) -> torch.Tensor | None:
    if not num_classes:
        if y is not None:
            raise ValueError(f"this {who} is unconditional (num_classes=0) and takes no labels")
        return None
    if y is None:
        raise ValueError(f"this {who} is class-conditional: pass labels y of shape [B] in 0..{num_classes - 1}")
    if y.shape != (batch,):
        raise ValueError(f"{who} expects labels of shape [{batch}], got {list(y.shape)}")
    return y


def _check_sizes(channels: int, image_size: int, width: int) -> None:
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(
            f"unsupported image_size {image_size}; supported: {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}"
        )
    if channels not in SUPPORTED_CHANNELS:
        raise ValueError(f"unsupported channels {channels}; supported: 1 (grayscale) or 3 (RGB)")
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")


def _plan(image_size: int) -> tuple[int, int]:
    """Return (start resolution, number of 2x up/down-sampling stages)."""
    start = 7 if image_size == 28 else 4
    return start, (image_size // start).bit_length() - 1


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02); batch-norm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Maps noise ``z`` of shape [B, latent_dim] (or [B, latent_dim, 1, 1]) to images in [-1, 1].

    With ``num_classes`` > 0 it also takes labels ``y`` [B] and draws that class.
    """

    def __init__(
        self,
        *,
        latent_dim: int = 100,
        channels: int = 1,
        image_size: int = 28,
        width: int = 64,
        num_classes: int = 0,
        class_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        _check_sizes(channels, image_size, width)
        _check_classes(num_classes)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        if class_names and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        # the names of the classes y indexes (a conditional run's, for --class by name); () if unnamed
        self.class_names = tuple(class_names)
        self.latent_dim, self.channels, self.image_size, self.width, self.num_classes = (
            latent_dim,
            channels,
            image_size,
            width,
            num_classes,
        )
        start, stages = _plan(image_size)
        features = width * 2 ** (stages - 1)
        # input is Z (and the one-hot label), going into a convolution; state size. features x start x start
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim + num_classes, features, start, 1, 0, bias=False),
            nn.BatchNorm2d(features),
            nn.ReLU(True),
        ]
        for _ in range(stages - 1):
            # state size doubles; feature maps halve, ending at width
            layers += [
                nn.ConvTranspose2d(features, features // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(features // 2),
                nn.ReLU(True),
            ]
            features //= 2
        # output layer: no batch norm (DCGAN); state size. channels x image_size x image_size
        layers += [nn.ConvTranspose2d(features, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() == 2 and z.shape[1] == self.latent_dim:
            z = z[:, :, None, None]
        elif not (z.dim() == 4 and z.shape[1:] == (self.latent_dim, 1, 1)):
            raise ValueError(
                f"Generator expects z of shape [B, {self.latent_dim}] or "
                f"[B, {self.latent_dim}, 1, 1], got {list(z.shape)}"
            )
        if _check_labels(y, self.num_classes, len(z), "Generator") is not None:
            one_hot = nn.functional.one_hot(y, self.num_classes).to(z.dtype)[:, :, None, None]
            z = torch.cat([z, one_hot], dim=1)
        return self.main(z)

    @classmethod
    def from_config(cls, cfg) -> Generator:
        """The generator a resolved training config describes (``TrainConfig``, or anything with its fields)."""
        return cls(
            latent_dim=cfg.latent_dim,
            channels=cfg.channels,
            image_size=cfg.image_size,
            width=cfg.g_width,
            num_classes=cfg.num_classes,
            class_names=cfg.class_names if cfg.num_classes else (),
        )

    @classmethod
    def from_checkpoint(cls, path, device="cpu", *, ema: bool = True) -> Generator:
        """The generator of a training checkpoint or run directory (its EMA when present), in eval mode,
        batch-norm statistics re-estimated for its weights (``dcgan.loading``, imported when called so
        that this module imports nothing of the package)."""
        from .loading import from_checkpoint

        return from_checkpoint(cls, path, torch.device(device), ema=ema)

    @classmethod
    def from_pretrained(cls, path, *, device="cpu", ema: bool = True) -> Generator:
        """A generator in eval mode from an export (safetensors, TorchScript), a checkpoint, a run directory,
        a Hub folder, a generator shipped with the package or a Hub id ``user/repo`` (``dcgan.loading``)."""
        from .loading import from_pretrained

        return from_pretrained(cls, path, device=device, ema=ema)


class Discriminator(nn.Module):
    """Maps images [B, channels, image_size, image_size] to [B, 1]: the probability each is real."""

    def __init__(self, *, channels: int = 1, image_size: int = 28, width: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        _check_sizes(channels, image_size, width)
        _check_classes(num_classes)
        self.channels, self.image_size, self.width, self.num_classes = channels, image_size, width, num_classes
        start, stages = _plan(image_size)
        # input is channels x image_size x image_size; no batch norm on the input layer (DCGAN)
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        features = width
        for _ in range(stages - 1):
            # state size halves; feature maps double
            layers += [
                nn.Conv2d(features, features * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(features * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            features *= 2
        # state size. features x start x start -> one logit per image
        layers.append(nn.Conv2d(features, 1, start, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        if num_classes:
            # projection: each class adds its own kernel to the final convolution's, N(0, 0.02) like it
            self.class_kernels = nn.Embedding(num_classes, features * start * start)
            nn.init.normal_(self.class_kernels.weight, 0.0, 0.02)
        self.apply(init_weights)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Raw scores [B, 1]; training uses these with BCE-with-logits (stable, autocast-safe)."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"Discriminator expects images of shape [B, {', '.join(map(str, expected))}], got {list(x.shape)}"
            )
        if _check_labels(y, self.num_classes, len(x), "Discriminator") is None:
            return self.main(x).view(-1, 1)
        h = self.main[:-1](x)  # state size. features x start x start
        projection = (self.class_kernels(y) * h.flatten(1)).sum(1, keepdim=True)
        return self.main[-1](h).view(-1, 1) + projection

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, y))
