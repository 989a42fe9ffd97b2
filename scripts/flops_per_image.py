"""FLOPs of one training image (D on a real and a fake image, G through D) for the models compared in the README.

    python scripts/flops_per_image.py

Counted with torch.utils.flop_counter, as ``dcgan bench`` counts them.
"""

import torch
from torch.utils.flop_counter import FlopCounterMode

from dcgan import Discriminator, Generator


def train_gflops_per_image(G: Generator, D: Discriminator, batch: int = 8) -> float:
    z = torch.randn(batch, G.latent_dim)
    real = torch.randn(batch, G.channels, G.image_size, G.image_size)
    with FlopCounterMode(display=False) as counter:
        fake = G(z)
        (D.logits(real).sum() + D.logits(fake.detach()).sum()).backward()  # the D step
        D.logits(fake).sum().backward()  # the G step
    return counter.get_total_flops() / batch / 1e9


for name, size, channels, g_width, d_width in [
    ("classic loop, 64x64 grayscale (MNIST upsampled)", 64, 1, 64, 64),
    ("classic loop, 64x64 RGB", 64, 3, 64, 64),
    ("28x28, G and D width 64 (the newcomer loop)", 28, 1, 64, 64),
    ("28x28, G width 64, D width 16 (dcgan train's default)", 28, 1, 64, 16),
]:
    G = Generator(channels=channels, image_size=size, width=g_width)
    D = Discriminator(channels=channels, image_size=size, width=d_width)
    print(f"{train_gflops_per_image(G, D):.3f} GFLOP per training image: {name}")
