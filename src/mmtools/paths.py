"""Where mmtools keeps its own files: a private cache (embeddings, label vectors, file hashes) and a home
(imported model names). Both can be moved with environment variables, which cron jobs and containers use."""

from __future__ import annotations

import os
from pathlib import Path


def _private_dir(variable: str, xdg_variable: str, xdg_default: str) -> Path:
    explicit = os.environ.get(variable, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
    else:
        base = os.environ.get(xdg_variable, "").strip() or os.path.join(os.path.expanduser("~"), xdg_default)
        path = Path(base) / "mmtools"
    # Private: cached vectors and hashes say what a user's photos are.
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """MMTOOLS_CACHE_DIR, else $XDG_CACHE_HOME/mmtools, else ~/.cache/mmtools (created, mode 0700)."""
    return _private_dir("MMTOOLS_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def home_dir() -> Path:
    """MMTOOLS_HOME, else $XDG_DATA_HOME/mmtools, else ~/.local/share/mmtools (created, mode 0700)."""
    return _private_dir("MMTOOLS_HOME", "XDG_DATA_HOME", os.path.join(".local", "share"))
