"""Are two training checkpoints the same training state, bit for bit?

    python scripts/same_checkpoint.py RUN_A/checkpoints/step_0000100.pt RUN_B/checkpoints/latest.pt

Compares every tensor of G, D and the EMA generator, and of both optimizers' states, and the step; prints one
line per part and exits 1 if any tensor differs. This is how docs/sharing.md shows that
``dcgan train --config RUN/config.json --steps N`` repeats RUN's first N steps.
"""

from __future__ import annotations

import sys

import torch

from dcgan import checkpoint
from dcgan.errors import UserError


def tensors(tree, prefix=""):
    """Every tensor in a nested dict/list, by its path."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from tensors(value, f"{prefix}[{i}]")


def compare(a: dict, b: dict) -> list[str]:
    """Lines naming each part and whether it is identical; a part that differs says where first."""
    lines, parts = (
        [],
        {
            **checkpoint.networks(a)._asdict(),
            **{k: v for k, v in checkpoint.optimizer_states(a)._asdict().items() if v},
        },
    )
    other = {**checkpoint.networks(b)._asdict(), **checkpoint.optimizer_states(b)._asdict()}
    lines.append(f"step: {checkpoint.step_of(a)} vs {checkpoint.step_of(b)}")
    for part, tree in parts.items():
        ta, tb = dict(tensors(tree)), dict(tensors(other[part]))
        differ = [k for k in ta if k not in tb or not torch.equal(ta[k], tb[k])] + [k for k in tb if k not in ta]
        n = sum(t.numel() for t in ta.values())
        lines.append(
            f"{part}: {len(ta)} tensors, {n:,} numbers, " + (f"DIFFER at {differ[0]}" if differ else "identical")
        )
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/same_checkpoint.py CHECKPOINT_A CHECKPOINT_B", file=sys.stderr)
        return 2
    try:
        a, b = (checkpoint.load_training(path) for path in argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = compare(a, b)
    print("\n".join(lines))
    same = checkpoint.step_of(a) == checkpoint.step_of(b) and not any("DIFFER" in line for line in lines)
    print("the same training state, bit for bit" if same else "NOT the same training state")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
