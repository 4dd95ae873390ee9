"""Where mmtools keeps its own files. Stand-in for the lead's ``mmtools.paths`` (same API)."""

from __future__ import annotations

import os
from pathlib import Path


def _private_dir(env: str, xdg: str, fallback: str) -> Path:
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
    else:
        base = os.environ.get(xdg) or str(Path.home() / fallback)
        path = Path(base).expanduser() / "mmtools"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def cache_dir() -> Path:
    """MMTOOLS_CACHE_DIR, else $XDG_CACHE_HOME/mmtools, else ~/.cache/mmtools (created private, 0700)."""
    return _private_dir("MMTOOLS_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def home_dir() -> Path:
    """MMTOOLS_HOME, else $XDG_DATA_HOME/mmtools, else ~/.local/share/mmtools (created private, 0700)."""
    return _private_dir("MMTOOLS_HOME", "XDG_DATA_HOME", ".local/share")
