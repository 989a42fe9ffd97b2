"""Where dcgan keeps what it can compute again (downloads, real-data statistics, decoded images), and the
digest of a folder's files that keys a cache by content."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_home() -> Path:
    """Where dcgan keeps downloads and cached statistics: $DCGAN_CACHE_DIR, else ~/.cache/dcgan."""
    return Path(os.environ.get("DCGAN_CACHE_DIR") or Path.home() / ".cache" / "dcgan")


def content_digest(root: str | os.PathLike) -> str | None:
    """A digest of every file under ``root`` (relative path, size, modification time), as the decoded-image
    cache keys its files: a file added, removed or rewritten changes it. None when ``root`` is no folder."""
    root = Path(root)
    if not root.is_dir():
        return str(_file_entry(root)) if root.is_file() else None
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            entries.append(_file_entry(Path(folder) / name, root))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _file_entry(path: Path, root: Path | None = None) -> list:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path.relative_to(root)) if root is not None else str(path), st.st_size, st.st_mtime_ns]
