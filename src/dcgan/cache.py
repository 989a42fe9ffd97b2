"""Where dcgan keeps what it can compute again: downloads, real-data statistics, decoded images."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """Where dcgan keeps downloads and cached statistics: $DCGAN_CACHE_DIR, else ~/.cache/dcgan."""
    return Path(os.environ.get("DCGAN_CACHE_DIR") or Path.home() / ".cache" / "dcgan")
