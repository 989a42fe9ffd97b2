"""The one guard every file-writing command goes through: nothing is overwritten that the command does
not own, nothing half-written is left behind, and a full or read-only disk is one line.

``check_output`` runs before any work: it refuses to overwrite a dcgan checkpoint anywhere, to write
into a run's ``checkpoints/`` folder, and to replace a file of a run directory that the command does
not own (``owned``: the run-relative names it may replace, e.g. ``samples/progress.gif`` for
``dcgan animate``). ``check_suffix`` refuses a file name that contradicts ``--format``. ``writing``
and ``writing_folder`` build the output under a temporary name and rename it into place when it is
complete; a failure or a SIGTERM (``terminate_cleanly``) removes the temporary file or folder.
``write_failure`` turns whatever a library raised for a full or read-only disk (``torch.save``
raises a ``RuntimeError``, not an ``OSError``) into the reason shown; a cache (``write_cache``)
warns and carries on instead.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import fileio
from .errors import UserError

CHECKPOINT_FORMAT = b"dcgan-checkpoint"  # the tag checkpoint.save puts in every checkpoint's pickle
_LOW_SPACE_BYTES = 1 << 20  # below this free space a failed write is taken for a full disk


class Terminated(BaseException):
    """SIGTERM arrived while a command was writing: unwind (removing temporary files), exit 143."""


# --------------------------------------------------------------------------- what may be written


def run_dir_of(path: str | os.PathLike) -> Path | None:
    """The run directory ``path`` lies in (or is): the nearest folder with a config.json beside
    checkpoints/ or metrics.jsonl; None outside any run."""
    here = Path(os.path.abspath(path))
    for folder in (here, *here.parents):
        if (folder / "config.json").is_file() and (
            (folder / "checkpoints").is_dir() or (folder / "metrics.jsonl").is_file()
        ):
            return folder
    return None


def is_checkpoint(path: str | os.PathLike) -> bool:
    """A dcgan checkpoint (torch.save's zip whose pickle carries the format tag), without loading it."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            return any(CHECKPOINT_FORMAT in archive.read(n) for n in names)
    except (zipfile.BadZipFile, OSError, KeyError, RuntimeError):
        return False


def check_output(
    path: str | os.PathLike, what: str = "output", *, folder: bool = False, owned: tuple[str, ...] = ()
) -> Path:
    """Refuse, before any work, an output that would destroy work or cannot be written.

    ``owned`` names the files, relative to a run directory, that this command may replace.
    """
    path = Path(path)
    run = run_dir_of(path.parent if not path.is_dir() or folder else path)
    if path.is_file() and is_checkpoint(path):
        raise UserError(f"refusing to overwrite the checkpoint {path}; give another output path")
    if run is not None:
        relative = Path(os.path.abspath(path)).relative_to(run)
        if relative.parts[:1] == ("checkpoints",):
            raise UserError(
                f"refusing to write {what} {path} into the checkpoints folder of run {run}; give a path outside it"
            )
        if path.exists() and not path.is_dir() and relative.as_posix() not in owned:
            raise UserError(f"refusing to overwrite {path}: it belongs to the run {run}; give another output path")
    if folder:
        return fileio.check_new_folder(path, what)
    return fileio.check_output_file(path, what)


def check_suffix(path: str | os.PathLike, fmt: str, suffixes: dict[str, tuple[str, ...]]) -> None:
    """A file name whose suffix belongs to another format than ``fmt`` is refused (a name with an
    unknown suffix is the user's choice)."""
    suffix = Path(path).suffix.lower()
    for other, names in suffixes.items():
        if other != fmt and suffix in names and suffix not in suffixes.get(fmt, ()):
            raise UserError(
                f"{path} has a {suffix} name, which is {other}, but --format {fmt} was given; "
                f"use a {' or '.join(suffixes[fmt])} name or --format {other}"
            )


# --------------------------------------------------------------------------- failures


def write_failure(error: BaseException, folder: str | os.PathLike) -> str | None:
    """The reason to show when ``error`` means the disk refused a write (full, read-only, no
    permission), whatever the exception type; None when it is something else (a bug)."""
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    if not isinstance(error, Exception):
        return None
    text = str(error)
    folder = fileio._existing_ancestor(Path(folder))
    try:
        stats = os.statvfs(folder)
        if stats.f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
        if stats.f_bavail * stats.f_frsize < _LOW_SPACE_BYTES:
            return os.strerror(errno.ENOSPC)
    except OSError:
        pass
    lowered = text.lower()
    if any(
        m in lowered
        for m in (
            "no space left",
            "read-only file system",
            "permission denied",
            "write failed",
            "disk quota",
            "file too large",
            "unexpected pos",
        )
    ):  # torch's zip writer on a full disk
        first = re.sub(r"\[enforce fail at [^\]]*\]\s*\.?\s*", "", text.strip().splitlines()[0])
        return f"{type(error).__name__}: {first[:160]}"
    return None


def _one_line(what: str, path: Path, error: BaseException, hint: str) -> UserError | None:
    reason = write_failure(error, path.parent)
    if reason is None:
        return None
    return UserError(f"could not write {what} to {path} ({reason}){'; ' + hint if hint else ''}")


@contextmanager
def reported(what: str, path: str | os.PathLike, hint: str = "") -> Iterator[None]:
    """Inside the block, a failed write of any exception type is one line naming ``what`` and ``path``."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        error = _one_line(what, Path(path), e, hint)
        if error is None:
            raise
        raise error from None


# --------------------------------------------------------------------------- writing


@contextmanager
def writing(path: str | os.PathLike, what: str = "output", *, hint: str = "", durable: bool = False) -> Iterator[Path]:
    """Yield a temporary file beside ``path``; rename it over ``path`` when the block succeeds.

    On any failure or SIGTERM the temporary file is removed and ``path`` is untouched. A disk
    failure is one line.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with fileio.atomic_path(path, durable=durable) as tmp:
            yield tmp
    except UserError:
        raise
    except Exception as e:
        error = _one_line(what, path, e, hint)
        if error is None:
            raise
        raise error from None


def write_cache(path: str | os.PathLike, what: str, write: Callable[[Path], None]) -> bool:
    """A cache file through the same guard; where it cannot be written (full disk, a file in the way,
    a run's file) one warning says so and the command carries on without it. True when written."""
    try:
        check_output(path, what)
        with writing(path, what) as tmp:
            write(tmp)
    except UserError as e:
        print(
            f"warning: {str(e).replace('refusing to', 'not going to')}; carrying on without the cache", file=sys.stderr
        )
        return False
    return True


@contextmanager
def writing_folder(path: str | os.PathLike, what: str = "output folder") -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` once complete.

    ``path`` must be missing or an empty folder (``check_output(folder=True)``); a failure or
    SIGTERM removes the temporary folder, so a rerun finds nothing in its way.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise UserError(f"could not write {what} to {path} ({e.strerror or e})") from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~fileio._umask())
        if path.is_dir():
            path.rmdir()  # empty (checked before the work): the finished folder takes its place
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, UserError):
            error = _one_line(what, path, e, "")
            if error is not None:
                raise error from None
        raise


# --------------------------------------------------------------------------- signals


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signal.Signals(signum).name)


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """SIGTERM unwinds the command as an exception, so every temporary file is removed on the way out.

    Only where SIGTERM would otherwise kill the process outright (its default handler) and only in the
    main thread; the trainer's own stop handler takes over inside its loop.
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_DFL:
            previous = None
        else:
            signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- sizes


def available_memory_bytes() -> int | None:
    """Memory free for new allocations now (physical pages available); None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(G, num_images: int, what: str, *, copies: int = 4) -> None:
    """Refuse, before any work, an output of ``num_images`` images of ``G`` that is built whole in memory
    and would not fit: uint8 pixels, ``copies`` times (the batches, their concatenation, the grid, the file)."""
    needed = num_images * G.channels * G.image_size * G.image_size * copies
    free = available_memory_bytes()
    if free is not None and needed > free:
        raise UserError(
            f"{what}: {num_images:,} images of {G.channels}x{G.image_size}x{G.image_size} need about "
            f"{_size(needed)}, more than the {_size(free)} free; make fewer"
            f"{', or write a folder (streamed)' if what == '--num-images' else ''}"
        )


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**30:.1f} GiB" if num_bytes >= 2**30 else f"{num_bytes / 2**20:.0f} MiB"
