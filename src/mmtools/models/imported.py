"""Short names for local model directories (`mmtools models import DIR --name NAME`), kept in
``models.json`` in the mmtools home directory (MMTOOLS_HOME).

The file is replaced atomically (written beside, fsynced, renamed), so a reader always sees a whole file;
changes hold an exclusive lock on ``models.json.lock`` while they read, modify and write, so two processes
importing at once both get their names in.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mmtools.errors import ModelError, UsageError

REGISTRY_NAME = "models.json"
REGISTRY_FORMAT = "mmtools-imported-models"
REGISTRY_VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def registry_path() -> Path:
    from mmtools.paths import home_dir

    return home_dir() / REGISTRY_NAME


def imported_models() -> dict[str, dict[str, Any]]:
    """Every imported name: ``{name: {"path": absolute directory, "imported_at": ISO time}}``."""
    return _read(registry_path())


def lookup_imported(name: str) -> str | None:
    """The directory imported under ``name``, or None. Cheap: one small file read, only for bare names."""
    if not NAME_PATTERN.match(name):
        return None
    try:
        path = registry_path()
    except OSError:  # no home directory can be made (read-only home): nothing was ever imported
        return None
    entry = _read(path).get(name) if path.exists() else None
    return entry["path"] if entry else None


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UsageError(f"model name {name!r} cannot be used",
                         hint="use letters, digits, '.', '_' or '-' (at most 64, no '/'), e.g. my-photos-v2")


def add_imported(name: str, directory: str | os.PathLike[str], *, replace: bool = False) -> dict[str, Any]:
    check_name(name)
    entry = {"path": str(Path(directory).resolve()), "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with _locked() as path:
        models = _read(path)
        old = models.get(name)
        if old is not None and not replace and old["path"] != entry["path"]:
            raise UsageError(f"model name {name!r} is already imported from {old['path']}",
                             hint="choose another --name, or pass --replace to point it at the new directory")
        models[name] = entry
        _write(path, models)
    return entry


def remove_imported(name: str) -> dict[str, Any] | None:
    """Forget ``name`` (the directory itself is left alone); the removed entry, or None if there was none."""
    with _locked() as path:
        models = _read(path)
        entry = models.pop(name, None)
        if entry is not None:
            _write(path, models)
    return entry


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"the imported-model list {path} cannot be read: {exc}",
                         hint="fix or remove that file (then import the models again)") from None
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
        raise ModelError(f"{path} is not an mmtools imported-model list",
                         hint="fix or remove that file (then import the models again)")
    if not isinstance(data.get("version"), int) or data["version"] > REGISTRY_VERSION:
        raise ModelError(f"the imported-model list {path} was written by a newer mmtools", hint="upgrade mmtools")
    models = data.get("models")
    if not isinstance(models, dict):
        return {}
    return {name: entry for name, entry in models.items()
            if isinstance(entry, dict) and isinstance(entry.get("path"), str)}


def _write(path: Path, models: dict[str, dict[str, Any]]) -> None:
    from mmtools.atomic import fsync_directory
    from mmtools.records import atomic_path

    data = {"format": REGISTRY_FORMAT, "version": REGISTRY_VERSION, "models": dict(sorted(models.items()))}
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    fsync_directory(path.parent)


@contextmanager
def _locked() -> Iterator[Path]:
    path = registry_path()
    with open(path.with_name(REGISTRY_NAME + ".lock"), "a+b") as lock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; single-user use only
            yield path
            return
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
