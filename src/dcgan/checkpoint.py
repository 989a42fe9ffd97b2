"""Checkpoints: one dict with everything needed to resume, written atomically.

Writing goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows),
so a crash or a full disk mid-write never replaces a good checkpoint.
Loading uses ``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

from .errors import UserError
from .fileio import atomic_path, load_weights_only

FORMAT = "dcgan-checkpoint"
VERSION = 1
LATEST = "latest.pt"


def save(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically and durably; on failure the old file is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=True) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run directory (its checkpoints/latest.pt)."""
    path = Path(path)
    if path.is_dir():
        candidate = path / "checkpoints" / LATEST
        if not candidate.is_file():
            raise UserError(f"no checkpoint in {path} (expected {candidate})")
        return candidate
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint; a corrupt, truncated or foreign file is a UserError."""
    path = resolve(path)
    state = load_weights_only(path, "checkpoint (corrupt or truncated?)", map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a dcgan checkpoint")
    if state.get("version") != VERSION:
        raise UserError(
            f"{path} has checkpoint format version {state.get('version')}; this dcgan reads version {VERSION}"
        )
    return state


def load_training(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``load``, and the state must hold what every reader takes from it: the config, G and the step."""
    state = load(path, map_location=map_location)
    lacking = missing(state, ("config", "G"))
    if lacking or not isinstance(state.get("step", 0), int):
        raise UserError(
            f"{resolve(path)} is a dcgan checkpoint without its {' and '.join(lacking) or 'step'}: "
            "cut short or edited by hand?"
        )
    return state


# --------------------------------------------------------------------------- what a checkpoint holds
# The one schema. A training checkpoint (checkpoints/*.pt) holds everything a resumed run needs; a
# baseline's generator.pt (benchmarks/baselines.py) holds the same first keys, its G only, and the
# images it saw. No other module indexes these dicts: they read them through the functions below.

NETWORKS = ("G", "D", "G_ema")  # the weights --init-from takes


def training_state(
    *,
    config: dict,
    G: dict,
    D: dict,
    G_ema: dict,
    opt_G: dict,
    opt_D: dict,
    scaler_G: dict,
    scaler_D: dict,
    step: int,
    epoch: int,
    images_in_epoch: int,
    stats_sum: torch.Tensor,
    stats_count: int,
    fixed_noise: torch.Tensor,
    rng: dict,
    noise_rng: torch.Tensor,
    world_size: int,
    best_fid: float,
    train_seconds: float,
) -> dict:
    """What a training checkpoint holds; ``images_in_epoch`` keeps the position in images, so that
    another number of processes can resume it."""
    return {
        "config": config,
        "G": G,
        "D": D,
        "G_ema": G_ema,
        "opt_G": opt_G,
        "opt_D": opt_D,
        "scaler_G": scaler_G,
        "scaler_D": scaler_D,
        "step": step,
        "epoch": epoch,
        "images_in_epoch": images_in_epoch,
        "stats_sum": stats_sum,
        "stats_count": stats_count,
        "fixed_noise": fixed_noise,
        "rng": rng,
        "noise_rng": noise_rng,
        "world_size": world_size,
        "best_fid": best_fid,
        "train_seconds": train_seconds,
    }


def generator_state(
    *, config: dict, G: dict, step: int, images_seen: int, train_seconds: float, stop_reason: str
) -> dict:
    """What a baseline's generator.pt holds: a G without EMA, and how long it trained."""
    return {
        "config": config,
        "G": G,
        "G_ema": None,
        "step": step,
        "images_seen": images_seen,
        "train_seconds": train_seconds,
        "stop_reason": stop_reason,
    }


def config_of(state: dict) -> dict:
    return state["config"]


def step_of(state: dict) -> int:
    return state["step"]


def has_ema(state: dict) -> bool:
    return state.get("G_ema") is not None


def generator_weights(state: dict, *, ema: bool = True) -> dict:
    """G's weights: the moving average where there is one and it is asked for."""
    return state["G_ema"] if ema and has_ema(state) else state["G"]


def missing(state: dict, keys: tuple[str, ...] = ("config", *NETWORKS)) -> list[str]:
    """The parts of ``keys`` a checkpoint lacks (by default what --init-from needs)."""
    return [key for key in keys if not isinstance(state.get(key), dict)]


class Networks(NamedTuple):
    """The three state dicts of a training checkpoint's networks."""

    G: dict
    D: dict
    G_ema: dict


def networks(state: dict) -> Networks | None:
    """G, D and the EMA weights (what --init-from takes); None where any is missing."""
    weights = [state.get(key) for key in NETWORKS]
    return Networks(*weights) if all(isinstance(w, dict) for w in weights) else None


class Optimizers(NamedTuple):
    """The optimizers' states, and the gradient scalers' (empty where they were off)."""

    opt_G: dict
    opt_D: dict
    scaler_G: dict
    scaler_D: dict


def optimizer_states(state: dict) -> Optimizers:
    return Optimizers(*(state.get(key) or {} for key in Optimizers._fields))


class Progress(NamedTuple):
    """Where a run was: step, epoch, position, fixed noise, running statistics, best FID, time, RNG."""

    step: int
    epoch: int
    images_in_epoch: int
    fixed_noise: torch.Tensor
    stats_sum: torch.Tensor
    stats_count: int
    best_fid: float
    train_seconds: float
    rng: dict
    noise_rng: torch.Tensor


def progress(state: dict) -> Progress:
    return Progress(
        step=state["step"],
        epoch=state["epoch"],
        images_in_epoch=state["images_in_epoch"],
        fixed_noise=state["fixed_noise"],
        stats_sum=state["stats_sum"],
        stats_count=state["stats_count"],
        best_fid=state.get("best_fid", float("inf")),  # fields a checkpoint predates take their defaults
        train_seconds=state.get("train_seconds", 0.0),
        rng=state["rng"],
        noise_rng=state["noise_rng"],
    )


def train_seconds(state: dict) -> float | None:
    return state.get("train_seconds")


def world_size(state: dict) -> int:
    return state.get("world_size") or 1


def images_seen(state: dict) -> int:
    """The training images a checkpoint's run has drawn: its own count, or steps x batch x processes."""
    if state.get("images_seen") is not None:
        return state["images_seen"]
    return state["step"] * state["config"]["batch_size"] * world_size(state)
