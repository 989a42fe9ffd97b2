"""The memorisation check on a 'model' that replays training images, beside fresh test images.

    python scripts/memorisation_replay.py ../shared/data/mnist

Samples are 1,000 random MNIST training images (a perfect copier) and, for contrast,
1,000 test images that are not the 1,000 held-out images the check compares with.
"""

from __future__ import annotations

import sys

import torch

from dcgan.config import TrainConfig
from dcgan.data import DataSpec, load
from dcgan.metrics.evaluate import real_features
from dcgan.metrics.nearest import memorisation
from dcgan.metrics.report import EvalOptions, prepare


def main(root: str) -> None:
    cfg = TrainConfig(data="mnist", data_root=root)
    extractor, load_train, key = prepare(cfg, EvalOptions(progress=False))
    train = load_train().images
    test = load(DataSpec(name="mnist", root=root, split="test"), progress=False).images
    train_features, _ = real_features(train, extractor, key=key, progress=False)
    g = torch.Generator().manual_seed(0)
    candidates = {
        "replayed training images": train[torch.randperm(len(train), generator=g)[:1000]],
        "unseen test images": test[5000:6000],
    }
    for name, samples in candidates.items():
        reports, _ = memorisation(samples, train, test[:1000], extractor, train_features=train_features)
        print(
            name
            + ": "
            + "; ".join(
                f"{s} ratio {r.ratio:.3f}, near copies {r.near_copy_share:.1%}, "
                f"{'FLAGGED' if r.flagged else 'not flagged'}"
                for s, r in reports.items()
            )
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist")
