"""Model fingerprints: equal for a moved or copied model directory, different after retraining in place.

Stand-in for the lead's ``mmtools.models.fingerprint`` (same API); the lead's version caches per-file hashes
and resolves Hugging Face snapshots. This one hashes the files of a local directory on every call.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

HASHED_SUFFIXES = (".safetensors", ".json", ".txt", ".model")


def model_fingerprint(location: str | Path, text_rules: Any, family: str) -> str:
    digest = hashlib.sha256()
    directory = Path(location)
    if directory.is_dir():
        for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in HASHED_SUFFIXES):
            digest.update(path.name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    else:
        digest.update(str(location).encode())
    digest.update(repr(text_rules).encode())
    digest.update(family.encode())
    return "fp-" + digest.hexdigest()[:16]
