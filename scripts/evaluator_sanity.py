"""The colour evaluator's floor and sanity rows: real against real, and real against damaged reals.

    python scripts/evaluator_sanity.py ../shared/data [--extractor cifar10] [--weights PATH]

Prints a Markdown table (docs/evaluation.md holds its output). Each row scores an image set
against CIFAR-10's 50,000 training images in the evaluator's features, as ``dcgan eval`` scores
generated images: the test split gives the floor a perfect generator would reach with 10,000
samples; blurred, greyed and noise images must score far worse. Where the anime faces are on disk,
two halves of them give the floor for unlabelled 64x64 data and CIFAR-10 against them the distance
of another domain.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from dcgan.data import DataSpec, load
from dcgan.metrics.evaluate import extract, score
from dcgan.metrics.evaluator import classifier_extractor


def features(extractor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return extract(iter(images.split(500)), extractor, total=len(images), desc="", progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the folder that holds cifar10/ (and anime-faces/)")
    parser.add_argument("--extractor", default="cifar10")
    parser.add_argument("--weights", help="evaluator weights (default: the shipped ones)")
    args = parser.parse_args()
    root = Path(args.data)
    extractor = classifier_extractor(args.extractor, args.weights)
    torch.manual_seed(0)

    spec = dict(name="cifar10", root=str(root / "cifar10"), channels=3, image_size=32)
    train = load(DataSpec(split="train", **spec), progress=False).images
    test = load(DataSpec(split="test", **spec), progress=False).images
    reference, _ = features(extractor, train)
    sets = {
        "CIFAR-10 test (10,000): the floor": test,
        "CIFAR-10 test, Gaussian blur sigma 1": TF.gaussian_blur(test, kernel_size=5, sigma=1.0),
        "CIFAR-10 test, Gaussian blur sigma 2": TF.gaussian_blur(test, kernel_size=9, sigma=2.0),
        "CIFAR-10 test, grey": TF.rgb_to_grayscale(test, num_output_channels=3),
        "CIFAR-10 test, 8 levels per channel": (test // 32) * 32 + 16,
        "CIFAR-10 test, half of them copies of 100 images": torch.cat([test[:5000], test[:100].repeat(50, 1, 1, 1)]),
        "uniform noise (10,000)": torch.randint(0, 256, test.shape, dtype=torch.uint8),
    }
    print(f"extractor {extractor.name} ({extractor.cache_key}); CPU: {platform.processor() or platform.machine()}")
    print()
    print("| images against CIFAR-10 train (50,000) | FID | KID | precision | recall | IS |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, images in sets.items():
        fake, logits = features(extractor, images)
        r = score(reference, fake, logits, extractor, precision_recall_k=3)
        print(f"| {name} | {r.fid:.2f} | {r.kid_mean:.4f} | {r.precision:.3f} | {r.recall:.3f} | {r.is_mean:.2f} |")

    anime_root = root / "anime-faces"
    if anime_root.is_dir():
        anime = load(DataSpec(name="folder", root=str(anime_root), channels=3, image_size=64), progress=False).images
        half = len(anime) // 2
        a, _ = features(extractor, anime[:half])
        print()
        print(f"| images against anime faces, first {half:,} | FID | KID | precision | recall | IS |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, images in {
            f"anime faces, the other {len(anime) - half:,}: the floor": anime[half:],
            "anime faces, Gaussian blur sigma 2 (64x64)": TF.gaussian_blur(anime[half:], kernel_size=9, sigma=2.0),
            "CIFAR-10 test (10,000): another domain": test,
        }.items():
            fake, logits = features(extractor, images)
            r = score(a, fake, logits, extractor, precision_recall_k=3)
            print(f"| {name} | {r.fid:.2f} | {r.kid_mean:.4f} | {r.precision:.3f} | {r.recall:.3f} | {r.is_mean:.2f} |")


if __name__ == "__main__":
    main()
