"""How much of a generator's evaluator FID its class mixture alone explains.

Draws 10,000 real MNIST test digits with the class shares a `dcgan quality` row measured, and
scores them like generated images (digit-evaluator features against 20,000 training digits).
Real test digits with MNIST's own shares score about 0.02, so the rest is the mixture.

    python scripts/class_mix_fid.py RESULTS_JSON RECIPE SEED [MNIST_ROOT]
"""

from __future__ import annotations

import json
import sys

import torch

from dcgan.data import DataSpec, load
from dcgan.metrics.evaluate import frechet_distance
from dcgan.metrics.evaluator import digit_extractor


def features(extractor, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([extractor.features_and_logits(images[i : i + 1000])[0] for i in range(0, len(images), 1000)])


def main(results_path: str, recipe: str, seed: str, root: str = "../shared/data/mnist") -> None:
    row = next(r for r in json.load(open(results_path))["rows"] if r["recipe"] == recipe and r["seed"] == int(seed))
    shares = row["eval"]["class_shares"]
    train = load(DataSpec(name="mnist", root=root, split="train"), progress=False).images
    test_set = load(DataSpec(name="mnist", root=root, split="test"), progress=False)
    test, labels = test_set.images, test_set.labels
    g = torch.Generator().manual_seed(0)
    extractor = digit_extractor().eval()
    real = features(extractor, train[torch.randperm(len(train), generator=g)[:20_000]])
    drawn = []
    for digit, share in shares.items():
        pool = (labels == int(digit)).nonzero().flatten()
        drawn.append(pool[torch.randint(len(pool), (round(share * 10_000),), generator=g)])
    print(f"real test digits, MNIST's shares: FID {frechet_distance(real, features(extractor, test)):.3f}")
    print(
        f"real test digits, {recipe} seed {seed}'s shares: "
        f"FID {frechet_distance(real, features(extractor, test[torch.cat(drawn)])):.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
