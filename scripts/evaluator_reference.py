"""Reference values for the digit evaluator: the MNIST test set scored as if it were a generator.

    python scripts/evaluator_reference.py ../shared/data/mnist

The 10,000 test digits against the 60,000 training digits: what a perfect generator would score.
"""

import sys

import torch

from dcgan.data import DataSpec, load
from dcgan.metrics import digit_extractor
from dcgan.metrics.evaluate import class_coverage, extract, frechet_distance, inception_score, kernel_distance


def main(root: str) -> None:
    extractor = digit_extractor().eval()
    sets = {
        split: load(DataSpec(name="mnist", root=root, split=split), progress=False).images
        for split in ("train", "test")
    }
    with torch.no_grad():
        (real, _), (fake, logits) = (
            extract(iter(sets[s].split(1000)), extractor, total=len(sets[s]), desc=s) for s in ("train", "test")
        )
    kid, kid_std = kernel_distance(real, fake)
    is_mean, is_std = inception_score(logits)
    shares = class_coverage(logits, extractor.labels)
    smallest = min(shares, key=shares.get)
    print(
        f"FID {frechet_distance(real, fake):.3f}  KID {kid:.4f} ± {kid_std:.4f}  IS {is_mean:.2f} ± {is_std:.2f}  "
        f"smallest class {shares[smallest]:.1%} ({smallest})"
    )


if __name__ == "__main__":
    main(sys.argv[1])
