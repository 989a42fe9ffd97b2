"""Checkpoints: one dict with everything needed to resume, written atomically.

Writing goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows),
so a crash or a full disk mid-write never replaces a good checkpoint.
Loading uses ``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    missing = [key for key in ("config", "G") if not isinstance(state.get(key), dict)]
    if missing or not isinstance(state.get("step", 0), int):
        raise UserError(
            f"{resolve(path)} is a dcgan checkpoint without its {' and '.join(missing) or 'step'}: "
            "cut short or edited by hand?"
        )
    return state
