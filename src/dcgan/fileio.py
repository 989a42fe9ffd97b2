"""Files written so that a crash, a full disk or a bad path never leaves a half-written one.

``atomic_path`` hands out a temporary name in the target's folder and renames it over
the target only once the writer has finished (``os.replace`` is atomic on POSIX and
Windows); ``written`` turns the operating system's errors into one-line user errors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's data to disk; harmless where unsupported (folders on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    On any failure the temporary file is removed and ``path`` is untouched. ``durable``
    also fsyncs the file and the rename (checkpoints: the newest must survive a power cut).
    """
    path = Path(path)
    # the temporary name ends in the target's suffix: writers that pick a format by suffix still can
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the usual mode
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent)


@contextmanager
def written(what: str, path: str | os.PathLike, hint: str = "") -> Iterator[None]:
    """Report an OSError inside the block as one line naming what could not be written where."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise UserError(f"could not write {what} to {path} ({reason}){'; ' + hint if hint else ''}") from None


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """A path that a new file can be written to: its folder exists (or can be made) and it is no folder."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is an existing folder; give a file name")
    parent = _existing_ancestor(path.parent)
    if not parent.is_dir():
        raise UserError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {what} {path}: {parent} is not writable")
    return path


def check_new_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """A folder that is missing or empty, with a writable place to be made in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file; give a folder path")
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"{what} {path} already exists and is not empty; choose a new one")
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        raise UserError(f"cannot make {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot make {what} {path}: {parent} is not writable")
    return path


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder on the way up that exists (``path`` itself when it does)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: readers see the old file or the new one."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_weights_only(path: str | os.PathLike, what: str, *, map_location="cpu"):
    """``torch.load(weights_only=True)``: a file cannot run code; any failure is one line naming ``what``.

    torch.load's errors for a foreign, truncated or corrupt file vary by format and version, so every
    exception becomes the same one-line UserError with the first sentence of the reason.
    """
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # a TorchScript file: torch warns, then refuses; the refusal is the line
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive.*")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a readable {what}: {first[:200]}") from None
