"""The Hugging Face Hub: the folder a run publishes, its model card and the upload.

``write_folder`` writes exactly what ``dcgan push`` uploads: ``model.safetensors`` (the EMA generator
as ``dcgan export`` writes it, its config in the header), ``config.json``, ``README.md`` (the model card,
with the Hub's YAML metadata: library, tags, datasets, license) and ``grid.png``. ``loading.download``
fetches a repository's weights into the Hub's cache for ``Generator.from_pretrained("user/repo")``. Only the upload
and the download need ``huggingface_hub``: ``pip install 'dcgan[hub]'``. Neither can be tested offline;
everything up to them is (tests/test_hub.py).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from . import checkpoint as ckpt
from .config import TrainConfig
from .errors import UserError
from .export import export_generator, generator_config
from .fileio import check_new_folder, write_text_atomic
from .loading import HUB_LIBRARY, HUB_WEIGHTS, REPO_ID, require_hub
from .models import Generator
from .sample import generate, write

CONFIG = "config.json"
CARD = "README.md"
GRID = "grid.png"
GRID_IMAGES, GRID_SEED = 64, 0
# The Hub's ids of the datasets dcgan reads by name; a folder of images has none
HUB_DATASETS = {
    "mnist": "ylecun/mnist",
    "mnist-5k": "ylecun/mnist",
    "fashion-mnist": "zalando-datasets/fashion_mnist",
    "cifar10": "uoft-cs/cifar10",
}
LOCAL_PATHS = ("data_root", "run_dir", "init_from")  # config fields left out of a published config.json


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise UserError(
            f"{repo_id!r} is not a Hugging Face Hub repository id: give user/name (letters, digits, "
            "'-', '_', '.'; no '--' or '..')"
        )
    return repo_id


def run_facts(run: str | os.PathLike) -> dict:
    """What a card says about a run's training: its config, steps, images seen, time, device, precision."""
    path = ckpt.resolve(run)
    state = ckpt.load_training(path)
    cfg = TrainConfig.from_dict(ckpt.config_of(state))
    record = {}
    try:  # options.write_config's record of what the run found
        record = json.loads((path.parent.parent / "config.json").read_text()).get("resolved") or {}
    except (OSError, ValueError, AttributeError):
        pass
    world_size = ckpt.world_size(state)
    return {
        "config": cfg.to_dict(),
        "checkpoint": str(path),
        "step": ckpt.step_of(state),
        "images_seen": ckpt.images_seen(state),
        "train_seconds": ckpt.train_seconds(state),
        "device": record.get("device"),
        "precision": record.get("precision"),
        "num_images": record.get("num_images"),
        "world_size": world_size,
        "torch": record.get("torch"),
    }


def read_evaluation(path: str | os.PathLike | None, facts: dict) -> dict | None:
    """The figures of ``dcgan eval RUN --json > FILE``, checked to be of this run's checkpoint and step."""
    if path is None:
        return None
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--eval-json {path}: not a readable JSON file ({e})") from None
    if not isinstance(values, dict) or "fid" not in values or "extractor" not in values:
        raise UserError(f"--eval-json {path}: not the output of dcgan eval --json (no fid or extractor)")
    if values.get("step") is not None and values["step"] != facts["step"]:
        raise UserError(f"--eval-json {path} scored step {values['step']}, but the run is at step {facts['step']}")
    return {k: v for k, v in values.items() if k != "checkpoint"}  # a local path


def write_folder(
    run: str | os.PathLike,
    out: str | os.PathLike,
    *,
    evaluation: dict | None = None,
    repo_id: str | None = None,
    license: str = "mit",
    ema: bool = True,
) -> Path:
    """The folder ``dcgan push`` uploads, for the run's EMA generator (or raw G with ``ema=False``)."""
    out = check_new_folder(out, "--hub-folder")
    facts = run_facts(run)
    G = Generator.from_checkpoint(run, "cpu", ema=ema)
    out.mkdir(parents=True, exist_ok=True)
    export_generator(G, out / HUB_WEIGHTS, "safetensors")
    write(generate(G, GRID_IMAGES, seed=GRID_SEED), out / GRID, "grid")
    # this machine's paths are no part of what is published
    training = {
        **{k: v for k, v in facts.items() if k != "checkpoint"},
        "config": {k: v for k, v in facts["config"].items() if k not in LOCAL_PATHS},
    }
    config = {
        **generator_config(G),
        "library_name": HUB_LIBRARY,
        "generator": "ema" if ema else "raw",
        "training": training,
        "evaluation": evaluation,
    }
    write_text_atomic(out / CONFIG, json.dumps(config, indent=2) + "\n")
    write_text_atomic(out / CARD, model_card(G, facts, evaluation, repo_id=repo_id, license=license, ema=ema))
    return out


def _yaml_list(name: str, items: list[str]) -> list[str]:
    return [f"{name}:", *(f"- {json.dumps(item)}" for item in items)] if items else []


def model_card(G, facts: dict, evaluation: dict | None, *, repo_id: str | None, license: str, ema: bool = True) -> str:
    """README.md: the Hub's YAML metadata, then the grid, the use, the training and the measured figures."""
    cfg = facts["config"]
    data = cfg["data"]
    conditional = bool(G.num_classes)
    tags = [
        "dcgan",
        "gan",
        "pytorch",
        "image-generation",
        "class-conditional-image-generation" if conditional else "unconditional-image-generation",
    ]
    datasets = [HUB_DATASETS[data]] if data in HUB_DATASETS else []
    meta = [
        "---",
        f"library_name: {HUB_LIBRARY}",
        f"license: {json.dumps(license)}",
        *_yaml_list("tags", tags),
        *_yaml_list("datasets", datasets),
        "pipeline_tag: unconditional-image-generation",
        *(_yaml_list("metrics", ["fid"]) if evaluation else []),
        "---",
    ]
    size = f"{G.image_size}x{G.image_size}"
    name = repo_id or "PATH_OR_REPO_ID"
    sample_call = f"G(z, torch.arange(16) % {G.num_classes})" if conditional else "G(z)"
    minutes = f"{facts['train_seconds'] / 60:.1f} min" if facts.get("train_seconds") is not None else "not recorded"
    on = ", ".join(str(x) for x in (facts.get("device"), facts.get("precision")) if x) or "not recorded"
    training = [
        (
            "data",
            f"{data}"
            + (f" ({facts['num_images']:,} images)" if facts.get("num_images") else "")
            + f", {size}, {G.channels} channel(s)",
        ),
        (
            "recipe",
            f"{cfg['recipe']} (batch {cfg['batch_size']}, Adam lr G {cfg['lr_g']:g} / D {cfg['lr_d']:g}, "
            f"R1 gamma {cfg['r1_gamma']:g}, EMA {cfg['ema_decay']:g})",
        ),
        ("widths", f"G {cfg['g_width']}, D {cfg['d_width']}; z of {G.latent_dim}"),
        ("steps", f"{facts['step']:,} ({facts['images_seen']:,} images seen)"),
        ("training time", minutes),
        ("device, precision", on),
        ("seed", str(cfg["seed"])),
    ]
    if evaluation:
        measured = [
            (
                "FID",
                f"{evaluation['fid']:.3f}: {evaluation.get('num_images', '?'):,} samples (seed "
                f"{evaluation.get('seed', '?')}) against {evaluation.get('data', '?')} "
                f"{evaluation.get('split', '')}, {evaluation.get('num_real_images', 0):,} images, "
                f"{evaluation['extractor']} features",
            )
        ]
        if evaluation.get("kid_mean") is not None:
            measured.append(("KID", f"{evaluation['kid_mean']:.5f} ± {evaluation['kid_std']:.5f}"))
        if evaluation.get("precision") is not None:
            measured.append(("precision, recall", f"{evaluation['precision']:.3f}, {evaluation['recall']:.3f}"))
        figures = _table(measured)
    else:
        figures = (
            "Not measured for this card: `dcgan eval RUN --json > eval.json`, then "
            "`dcgan export RUN --hub-folder DIR --eval-json eval.json`, adds FID, KID, precision and recall."
        )
    body = f"""
# DCGAN generator: {data}, {size}

![{GRID_IMAGES} samples, noise seed {GRID_SEED}]({GRID})

A {"class-conditional " if conditional else ""}DCGAN generator (Radford, Metz and Chintala, 2016) trained with
the `dcgan` package. It maps z [B, {G.latent_dim}] (standard normal){" and class indices y [B]" if conditional else ""}
to images [B, {G.channels}, {G.image_size}, {G.image_size}] in [-1, 1]. The grid above is {GRID_IMAGES} of its samples
(noise from `torch.Generator().manual_seed({GRID_SEED})`).

## Use

```python
import torch
from dcgan import Generator

G = Generator.from_pretrained("{name}")  # downloads model.safetensors into the Hub cache once
z = torch.randn(16, G.latent_dim)
images = {sample_call}  # [16, {G.channels}, {G.image_size}, {G.image_size}] in [-1, 1]
```

or `dcgan sample --pretrained {name} -o grid.png`.

## Training

{_table(training)}

## Measured

{figures}

## Files

- `{HUB_WEIGHTS}`: the {"moving-average (EMA)" if ema and cfg["ema_decay"] else "raw"} generator's weights in eval
  mode, batch-norm statistics re-estimated for them; its config (sizes, classes) is in the safetensors header
- `{CONFIG}`: that config, the run's full training config and the figures above
- `{GRID}`: the grid above

License: {license} (the license given to `dcgan export`/`dcgan push`); the training data's own terms apply too.
"""
    return "\n".join(meta) + "\n" + body


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def push(
    run: str | os.PathLike,
    repo_id: str,
    *,
    evaluation_path: str | None = None,
    private: bool = False,
    license: str = "mit",
    ema: bool = True,
) -> str:
    """``dcgan push``: write the Hub folder to a temporary place and upload it; returns the repository URL."""
    check_repo_id(repo_id)
    hf = require_hub()
    evaluation = read_evaluation(evaluation_path, run_facts(run))
    with tempfile.TemporaryDirectory(prefix="dcgan-hub-") as tmp:
        folder = write_folder(
            run, Path(tmp) / "folder", evaluation=evaluation, repo_id=repo_id, license=license, ema=ema
        )
        try:  # any failure past this point is the network's or the Hub's: one line, not a traceback
            api = hf.HfApi()
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="dcgan push")
        except Exception as e:
            raise UserError(
                f"uploading to {repo_id} failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                "log in with `hf auth login` or set HF_TOKEN"
            ) from None
    return str(url)
