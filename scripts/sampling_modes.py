"""Whether the way a checkpoint is sampled moves its evaluator FID.

Scores one checkpoint's generator four ways, each on 10,000 samples against the MNIST training
digits with the digit evaluator: the EMA generator with batch norm re-estimated on 16 batches of
noise (what `dcgan eval` does), the same with 64 batches, the EMA generator with train-mode batch
norm (per-batch statistics, as the classic loop samples), and the raw generator.

    python scripts/sampling_modes.py CHECKPOINT [MNIST_ROOT]
"""

from __future__ import annotations

import copy
import sys

import torch

from dcgan import checkpoint as ckpt
from dcgan.config import TrainConfig
from dcgan.data import DataSpec, load
from dcgan.ema import recalibrated
from dcgan.metrics.evaluate import evaluate
from dcgan.metrics.evaluator import digit_extractor
from dcgan.step import build_models


def main(checkpoint: str, root: str = "../shared/data/mnist") -> None:
    state = ckpt.load(checkpoint, map_location="cpu")
    cfg = TrainConfig.from_dict(state["config"]).resolved()
    ema, raw = build_models(cfg)[0], build_models(cfg)[0]
    ema.load_state_dict(state["G_ema"])
    raw.load_state_dict(state["G"])
    real = load(DataSpec(name="mnist", root=root, split="train"), progress=False)
    extractor = digit_extractor()
    ways = {
        "EMA, batch norm re-estimated on 16 batches (dcgan eval)": recalibrated(ema),
        "EMA, batch norm re-estimated on 64 batches": recalibrated(ema, num_batches=64),
        "EMA, train-mode batch norm": copy.deepcopy(ema).train(),
        "raw G, batch norm re-estimated on 16 batches": recalibrated(raw),
    }
    for name, generator in ways.items():
        r = evaluate(generator, real, extractor, progress=False)
        print(
            f"{name}: FID {r.fid:.2f}, KID {r.kid_mean:.4f}, IS {r.is_mean:.2f}, "
            f"smallest class {r.min_class}: {r.min_class_share:.1%}"
        )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main(*sys.argv[1:])
