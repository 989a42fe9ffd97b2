"""Write MNIST digits as PNG files, for the folder-dataset measurements in docs/conditional.md.

python scripts/mnist_to_folders.py ../shared/data/mnist runs/digits/by-class
    one sub-folder per class, named 0 to 9 as the digit evaluator names its classes (so that
    dcgan eval can score the conditional accuracy): the input of dcgan train --data folder --conditional
python scripts/mnist_to_folders.py ../shared/data/mnist runs/digits/flat-5k --flat --count 5000
    one flat folder of a random 5,000, named in random order, so --max-images N takes a random N
python scripts/mnist_to_folders.py ../shared/data/mnist runs/digits/59 --classes 5,6,7,8,9
    only some classes (a second dataset of the same shape, for fine-tuning)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from dcgan.data import DataSpec, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist_root", help="the folder with the MNIST IDX files")
    parser.add_argument("out", help="a new folder")
    parser.add_argument("--flat", action="store_true", help="one folder, files in random order, no class folders")
    parser.add_argument("--count", type=int, help="only this many digits, drawn at random")
    parser.add_argument("--classes", help="only these digits, e.g. 5,6,7,8,9")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load(DataSpec(name="mnist", root=args.mnist_root, split=args.split), progress=False)
    keep = torch.arange(len(data))
    if args.classes:
        wanted = torch.tensor([int(c) for c in args.classes.split(",")])
        keep = keep[torch.isin(data.labels, wanted)]
    keep = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(args.seed))]
    if args.count:
        keep = keep[: args.count]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    for position, index in enumerate(keep.tolist()):
        folder = out if args.flat else out / str(data.labels[index].item())
        folder.mkdir(exist_ok=True)
        # the position first: sorted file names are a random order, whatever --max-images takes
        Image.fromarray(data.images[index, 0].numpy()).save(folder / f"{position:06d}-{index:05d}.png")
    print(f"wrote {len(keep):,} digits to {out}")


if __name__ == "__main__":
    main()
