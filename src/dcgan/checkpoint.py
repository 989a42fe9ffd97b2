"""Checkpoints: one dict with everything needed to resume, written atomically.

Writing goes to a temporary file in the same folder, is flushed and fsynced,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows),
so a crash or a full disk mid-write never replaces a good checkpoint.
Loading uses ``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from .errors import UserError

FORMAT = "dcgan-checkpoint"
VERSION = 1
LATEST = "latest.pt"


def save(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically; on failure the old file is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets the usual mode
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where unsupported."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a readable checkpoint (corrupt or truncated?): {first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a dcgan checkpoint")
    if state.get("version") != VERSION:
        raise UserError(
            f"{path} has checkpoint format version {state.get('version')}; "
            f"this dcgan reads version {VERSION}"
        )
    return state
