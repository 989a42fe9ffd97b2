"""The Inception-v3 feature extractor of the standard FID, so that numbers compare with published ones.

The network and its weights are torch-fidelity's port of the 2015 TensorFlow
graph that the original FID and KID code used (the one torchmetrics uses by
default), with its TensorFlow-compatible resize to 299x299. Nothing downloads
here: the weights come from ``--inception-weights PATH`` or from the torch hub
cache, where torch-fidelity (and ``torchmetrics``' FID) put them when online.
Offline without them, a ``UserError`` says in one line how to get them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..fileio import load_weights_only

WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
WEIGHTS_NAME = WEIGHTS_URL.rsplit("/", 1)[1]
NUM_FEATURES = 2048  # the pool3 layer, what FID and KID read
NUM_CLASSES = 1008  # the 2015 graph's classifier, whose unbiased logits give the Inception Score


def cached_weights_path() -> Path:
    """Where torch.hub (and so torch-fidelity) keeps the downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


class InceptionExtractor(nn.Module):
    """uint8 images [N, 1 or 3, H, W] -> 2048 pool features (``forward``) and 1008 logits.

    ``network`` maps uint8 RGB images to the pair (features, logits) and does
    its own resizing; tests pass a small stand-in for it.
    """

    name = "inception"
    labels = None  # ImageNet classes say nothing about which modes of a dataset are covered

    def __init__(
        self,
        network: nn.Module,
        *,
        cache_key: str,
        num_features: int = NUM_FEATURES,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.num_features, self.num_classes, self.cache_key = num_features, num_classes, cache_key

    @torch.no_grad()
    def features_and_logits(self, images_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images_u8.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images_u8.dtype}")
        if images_u8.shape[1] == 1:
            images_u8 = images_u8.expand(-1, 3, -1, -1)  # grayscale as RGB, as torch-fidelity does
        features, logits = self.network(images_u8)
        return features.float(), logits.float()

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images_u8)[0]


def _torch_fidelity_network(weights: Path) -> nn.Module:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise UserError("--extractor inception needs torch-fidelity: pip install torch-fidelity") from None
    # "inception-v3-compat" is the name torch-fidelity registers this network under
    return FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
    )


def inception_extractor(
    weights_path: str | os.PathLike | None = None,
    *,
    build: Callable[[Path], nn.Module] = _torch_fidelity_network,
) -> InceptionExtractor:
    """The FID Inception network with weights from ``weights_path`` or the torch hub cache.

    The file is first opened with ``weights_only=True``: torch-fidelity itself
    loads it with full unpickling, which this check makes safe.
    """
    path = Path(weights_path) if weights_path is not None else cached_weights_path()
    if not path.is_file():
        where = (
            f"--inception-weights {path} does not exist"
            if weights_path is not None
            else (f"no Inception weights at {path}")
        )
        raise UserError(
            f"{where}; download {WEIGHTS_URL} to {cached_weights_path()} or pass --inception-weights PATH, "
            "or use --extractor digits, which works offline"
        )
    state = load_weights_only(path, "weights file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of the FID Inception network")
    try:
        network = build(path)
    except RuntimeError as e:  # load_state_dict: missing or mismatched keys
        raise UserError(f"{path} does not fit the FID Inception network: {str(e).splitlines()[0][:200]}") from None
    return InceptionExtractor(network, cache_key=f"inception-{_sha256(path)[:16]}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()
