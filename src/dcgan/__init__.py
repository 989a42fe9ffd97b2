"""dcgan: Deep Convolutional GANs (Radford, Metz and Chintala, 2016) in PyTorch.

from dcgan import Generator, Discriminator
"""

from .config import TrainConfig
from .errors import UserError
from .models import Discriminator, Generator
from .train import Trainer  # the function train() stays at dcgan.train.train: no shadowing the module

__all__ = ["Discriminator", "Generator", "TrainConfig", "Trainer", "UserError"]
__version__ = "0.1.0"
