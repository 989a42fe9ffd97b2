"""The two baseline recipes of ``dcgan quality``, trained as their authors would, until SIGTERM.

- ``classic``: the pytorch/examples loop (``classic.py``): images through PIL per sample in a
  2-worker DataLoader (MNIST upsampled to 64x64, as the example does; colour data at its own size),
  batch 64, widths 64, Sigmoid + BCELoss, plain Adam 2e-4, betas (0.5, 0.999), no EMA;
- ``newcomer``: the same loop at the native 28x28 as a newcomer writes it:
  ToTensor + Normalize((0.5,), (0.5,)) per sample, batch 128, the project's
  28x28 networks with a Sigmoid on D, no EMA, no tricks.

``dcgan quality`` runs ``python -m dcgan.benchmarks.baselines SPEC_JSON`` in a subprocess
per recipe and seed. Also here: the collapse rule both the benchmark and the
baselines report with (the trainer's own).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import checkpoint as ckpt
from ..errors import UserError
from ..fileio import write_text_atomic
from ..runlog import CollapseDetector

LATENT_DIM = 100


@dataclass(frozen=True)
class Baseline:
    """A recipe trained with the classic loop (``classic.classic_step``)."""

    digits_size: int  # the size it trains 28x28 grayscale digits at; colour data trains at its own
    batch_size: int

    def image_size(self, data_size: int, channels: int) -> int:
        return self.digits_size if channels == 1 else data_size

    def transform(self, image_size: int, channels: int):
        """PIL image -> float tensor in [-1, 1], per sample."""
        from torchvision import transforms

        from .classic import classic_transform

        if image_size == 28:  # the newcomer's: no resizing at the native size
            return transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
        return classic_transform(channels, image_size)


BASELINES = {"classic": Baseline(digits_size=64, batch_size=64), "newcomer": Baseline(digits_size=28, batch_size=128)}


def collapse_warning(recipe: str, seed: int, row: dict) -> str:
    return (
        f"warning: {recipe} seed {seed} looks collapsed at step {row.get('step')}: D(x) {row['D_x']:.3f}, "
        f"D(G(z)) {row['D_G_z_before']:.4f}, loss_G {row['loss_G']:.1f}"
    )


# --------------------------------------------------------------------------- the baselines' training


class PILImages(Dataset):
    """uint8 images [N, C, H, W] served as ``torchvision.datasets.MNIST`` and ``ImageFolder`` do: a PIL
    image per sample through ``transform``, with a dummy label."""

    def __init__(self, images_u8: torch.Tensor, transform) -> None:
        # 2-D arrays for grayscale (PIL mode "L"), H x W x 3 for RGB
        self.images = images_u8[:, 0].numpy() if images_u8.size(1) == 1 else images_u8.permute(0, 2, 3, 1).numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), 0


def train_baseline(spec: dict) -> Path:
    """Train a classic-loop recipe until SIGTERM; return its generator file.

    Writes to ``spec['run_dir']``: config.json when training starts, metrics.jsonl
    (the trainer's row format) and generator.pt, a dcgan checkpoint with the
    generator only, which ``dcgan sample`` and ``dcgan eval`` read.
    """
    from ..signals import StopFlag, on_signals

    stop = StopFlag()
    with on_signals(stop):
        return _train_baseline(spec, stop)


def _train_baseline(spec: dict, stop) -> Path:
    from ..config import TrainConfig
    from ..data import DataSpec, load
    from ..runlog import STAT_NAMES, MetricsLog
    from ..runtime import choose_device
    from .classic import classic_batches, classic_loader, classic_models, classic_optimizers, classic_step

    recipe = BASELINES[spec["recipe"]]
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    device = choose_device(spec["device"])
    torch.manual_seed(spec["seed"])
    channels = spec.get("channels", 1)
    data_size = spec.get("image_size", 28)
    image_size = recipe.image_size(data_size, channels)
    images = load(
        DataSpec(
            name=spec["data"],
            root=spec["data_root"],
            max_images=spec["max_images"],
            image_size=data_size,
            channels=channels,
        ),
        progress=False,
    ).images
    # shuffled, 2 workers, the last partial batch kept, new workers every epoch
    dataset = PILImages(images, recipe.transform(image_size, channels))
    batches = classic_batches(classic_loader(dataset, recipe.batch_size), device)
    G, D = classic_models(latent_dim=LATENT_DIM, channels=channels, image_size=image_size, width=spec["width"])
    G.to(device)
    D.to(device)
    opt_G, opt_D = classic_optimizers(G, D)  # plain Adam, lr 2e-4, betas (0.5, 0.999)
    criterion = nn.BCELoss()
    cfg = TrainConfig(
        data=spec["data"],
        data_root=spec["data_root"],
        image_size=image_size,
        channels=channels,
        max_images=spec["max_images"],
        latent_dim=LATENT_DIM,
        g_width=spec["width"],
        d_width=spec["width"],
        batch_size=recipe.batch_size,
        ema_decay=0.0,
        seed=spec["seed"],
        device=spec["device"],
        run_dir=str(run_dir),
        log_every_steps=spec["log_every_steps"],
        extra={"recipe": spec["recipe"]},
    )
    write_text_atomic(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")  # the clock starts

    log, detector = MetricsLog(run_dir / "metrics.jsonl"), CollapseDetector()
    sums, count, step, images_seen = [0.0] * len(STAT_NAMES), 0, 0, 0
    start = time.perf_counter()
    while stop.reason is None:
        real = next(batches)
        z = torch.randn(real.size(0), LATENT_DIM, 1, 1, device=device)
        stats = classic_step(G, D, opt_G, opt_D, real, z, criterion)
        step, images_seen, count = step + 1, images_seen + real.size(0), count + 1
        sums = [s + v for s, v in zip(sums, dataclasses.astuple(stats))]
        if count == spec["log_every_steps"]:
            row = {"step": step, **{k: s / count for k, s in zip(STAT_NAMES, sums)}}
            log.write(row)
            sums, count = [0.0] * len(STAT_NAMES), 0
            if detector.add(row):
                print(collapse_warning(spec["recipe"], spec["seed"], row), flush=True)
    seconds = time.perf_counter() - start
    del batches  # shuts the loader's workers down before the save

    cfg = dataclasses.replace(cfg, steps=step, epochs=None)
    path = run_dir / "generator.pt"
    ckpt.save(
        ckpt.generator_state(
            config=cfg.to_dict(),
            G=G.state_dict(),
            step=step,
            images_seen=images_seen,
            train_seconds=seconds,
            stop_reason=stop.reason,
        ),
        path,
    )
    print(
        f"{spec['recipe']}: stopped by {stop.reason} after {step} steps, {images_seen} images, "
        f"{seconds:.1f} s; wrote {path}",
        flush=True,
    )
    return path


def _worker_main(argv: list[str]) -> int:
    try:
        train_baseline(json.loads(argv[0]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
