"""Content hashes of files, remembered across runs so that an unchanged file is never read twice.

A file's hash is kept in a small SQLite table in the cache directory under its device, inode, size and
modification time: a file that was moved or renamed keeps its entry, one that was rewritten gets a new one.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

from mmtools.paths import cache_dir

CHUNK = 1 << 20
_SCHEMA = ("CREATE TABLE IF NOT EXISTS hashes (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, "
           "sha256 TEXT NOT NULL, PRIMARY KEY (dev, ino, size, mtime_ns))")
# Hugging Face's cache names large files by their SHA-256: ``blobs/<64 hex>``; no need to read them.
_HEX = frozenset("0123456789abcdef")

_local = threading.local()


def _connection() -> sqlite3.Connection | None:
    connection = getattr(_local, "connection", None)
    if connection is None:
        try:
            connection = sqlite3.connect(cache_dir() / "file-hashes.sqlite", timeout=30)
            connection.execute(_SCHEMA)
        except (OSError, sqlite3.Error):
            return None  # an unwritable cache only costs speed
        _local.connection = connection
    return connection


def hash_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's contents (hex), without the cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of ``path``'s contents, read from the cache when the file has not changed since."""
    real = Path(os.path.realpath(path))
    if len(real.name) == 64 and set(real.name) <= _HEX and real.parent.name == "blobs":
        return real.name
    stat = real.stat()
    key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    connection = _connection()
    if connection is not None:
        try:
            row = connection.execute("SELECT sha256 FROM hashes WHERE dev=? AND ino=? AND size=? AND mtime_ns=?",
                                     key).fetchone()
            if row:
                return row[0]
        except sqlite3.Error:
            connection = None
    digest = hash_file(real)
    if connection is not None:
        try:
            with connection:
                connection.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)", (*key, digest))
        except sqlite3.Error:
            pass
    return digest
