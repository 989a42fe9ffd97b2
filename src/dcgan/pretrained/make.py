"""Making a shipped generator from a trained run: its weights, its scored card and its grid.

``scripts/make_pretrained.sh`` trains a run and calls ``make``; ``score`` is also what
``dcgan eval --pretrained`` and the test that each shipped generator scores as its card says use.
The generator scored and drawn is the one loaded back from the written safetensors file.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import __version__
from ..config import DIGIT_DATASETS
from ..export import export_generator, generator_config
from ..fileio import write_text_atomic
from ..hub import run_facts
from ..metrics.evaluate import evaluate
from ..metrics.report import EvalOptions, RealData, prepare
from ..models import Generator
from ..sample import generate, write
from . import CARD_FORMAT, FOLDER

GRID_IMAGES, GRID_SEED = 64, 0


def score(
    G,
    *,
    data: str,
    data_root: str | None,
    num_images: int,
    seed: int = 0,
    split: str = "train",
    cache_dir: str | None = None,
    progress: bool = False,
    precision_recall_k: int | None = None,
):
    """Evaluate a loaded generator against real data (``dcgan eval``'s figures); returns (result, info)."""
    opts = EvalOptions(
        num_images=num_images,
        data=data,
        data_root=data_root,
        split=split,
        seed=seed,
        cache_dir=cache_dir,
        progress=progress,
        precision_recall_k=precision_recall_k,
    )
    extractor, real, key = prepare(RealData(data, data_root, G.image_size, G.channels), opts)
    result = evaluate(
        G,
        real,
        extractor,
        num_images=num_images,
        seed=seed,
        batch_size=opts.batch_size,
        cache_key=key,
        cache_dir=cache_dir,
        progress=progress,
        precision_recall_k=precision_recall_k,
    )
    info = {"data": data, "split": split, "image_size": G.image_size, "channels": G.channels, "seed": seed}
    return result, info


def figures(result, info: dict) -> dict:
    """A card's record of one evaluation."""
    return {
        "value": result.fid,
        "kid": result.kid_mean,
        "extractor": result.extractor,
        "num_images": result.num_images,
        "seed": info["seed"],
        "real": f"{info['data']} {info['split']}",
        "data": info["data"],
        "split": info["split"],
        "num_real_images": result.num_real_images,
        "precision": result.precision,
        "recall": result.recall,
    }


def make(
    run: str | os.PathLike,
    name: str,
    *,
    data_root: str | None,
    commands: list[str],
    num_images: int = 10_000,
    check_num_images: int = 2_000,
    check_data: str | None = None,
    check_data_root: str | None = None,
    check_split: str = "train",
    out_dir: str | os.PathLike = FOLDER,
    progress: bool = True,
) -> Path:
    """Write ``<name>.safetensors``, ``<name>.png`` and the card ``<name>.json`` into ``out_dir``.

    The card's ``fid`` is scored against the run's own dataset (``num_images`` samples); its ``check`` with
    ``check_num_images`` samples against ``check_data`` (``check_split``), which a test repeats. For digits the
    check is against the built-in mnist-5k digits, so any install repeats it offline in seconds; a colour
    generator's check needs its data on disk, and the card records the data root's folder name to find it.
    """
    out_dir = Path(out_dir)
    facts = run_facts(run)
    cfg = facts["config"]
    weights = out_dir / f"{name}.safetensors"
    export_generator(Generator.from_checkpoint(run, torch.device("cpu")), weights, "safetensors")
    G = Generator.from_pretrained(weights)  # score and draw what ships, as it loads
    write(generate(G, GRID_IMAGES, seed=GRID_SEED), out_dir / f"{name}.png", "grid")
    main = figures(
        *score(G, data=cfg["data"], data_root=data_root, num_images=num_images, progress=progress, precision_recall_k=3)
    )
    if check_data is None:
        check_data, check_data_root = ("mnist-5k", None) if cfg["data"] in DIGIT_DATASETS else (cfg["data"], data_root)
    check = figures(
        *score(G, data=check_data, data_root=check_data_root, num_images=check_num_images, split=check_split)
    )
    check["data_root"] = Path(check_data_root).name if check_data_root else None
    card = {
        "format": CARD_FORMAT,
        "version": 1,
        "name": name,
        "weights": weights.name,
        "grid": f"{name}.png",
        "generator": generator_config(G),
        "data": {
            "name": cfg["data"],
            "root": Path(data_root).name if data_root else None,  # names a folder dataset, such as anime-faces
            "num_images": facts["num_images"],
            "image_size": cfg["image_size"],
            "channels": cfg["channels"],
        },
        "recipe": cfg["recipe"],
        "steps": facts["step"],
        "images_seen": facts["images_seen"],
        "train_seconds": facts["train_seconds"],
        "device": facts["device"],
        "precision": facts["precision"],
        "fid": main,
        "check": check,
        "commands": commands,
        "config": cfg,
        "made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "dcgan": __version__,
        "torch": torch.__version__,
    }
    path = out_dir / f"{name}.json"
    write_text_atomic(path, json.dumps(card, indent=2) + "\n")
    return path
