"""The embedding cache: image vectors keyed by file content and model, so unchanged files are not encoded again.

One SQLite file, ``embeddings.sqlite`` in ``mmtools.paths.cache_dir()`` (private to the user), shared by
every run (WAL, so parallel shards can use it at once):

* file hashes come from ``mmtools.filehash`` (the shared hash cache): a file whose inode, size and
  modification time are what they were is not read again; a new or changed one is hashed (SHA-256).
* ``vectors(sha256, model, vector)``: the unit vector of a content under a model key. A renamed or copied
  photo has the same content, so it is not encoded again. A video frame's content is the video's SHA-256
  and the frame's time (``SHA256#t=TIME``, ``ImageSource.content_key``).
* ``models(model, fingerprint)``: the model key is a hash of the model directory's files (weights,
  configs, manifest), computed through the same hash cache, so a re-run need not load the model at all;
  its fingerprint is remembered the first time the model is loaded.

Vectors are committed after every batch: a run that is interrupted and started again does not redo them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from mmtools.filehash import file_sha256
from mmtools.images import ImageDecodeError, ImageSource, photo_fields, stat_image_file
from mmtools.models.encoder import Encoder

log = logging.getLogger("mmtools")

CACHE_NAME = "embeddings.sqlite"
CACHE_FORMAT = 1
MODEL_FILES = (".safetensors", ".json", ".txt", ".model")  # what makes a model directory's vectors

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (sha256 TEXT NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL,
                                    PRIMARY KEY (sha256, model));
CREATE TABLE IF NOT EXISTS models (model TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
"""


class CacheUnavailable(Exception):
    """The cache cannot be used (unwritable, corrupt, newer format); embedding goes on without it."""


@dataclass(frozen=True)
class FileFacts:
    """What an image record carries about its file, so an index can tell later whether it changed."""

    size: int
    mtime_ns: int
    sha256: str
    photo: dict[str, Any] = field(default_factory=dict)  # taken_at, gps from EXIF (images.photo_fields)

    def fields(self) -> dict[str, Any]:
        return {"file_size": self.size, "file_mtime": self.mtime_ns / 1e9, "sha256": self.sha256}


def file_facts(path: str) -> FileFacts:
    """Size, modification time and content hash of an image file (an unchanged file is not hashed again),
    and what its EXIF says of when and where it was taken (its header only); ImageDecodeError if it cannot
    be read."""
    stat = stat_image_file(path)
    try:
        return FileFacts(stat.st_size, stat.st_mtime_ns, file_sha256(path), photo_fields(path))
    except IsADirectoryError:
        raise ImageDecodeError("is a folder, not an image file") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(f"cannot read it ({exc.strerror})") from None


class EmbeddingCache:
    """The cache file. Thread-safe (decode threads look files up while the main thread stores vectors)."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        if path is None:
            from mmtools.paths import cache_dir

            path = cache_dir() / CACHE_NAME
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            row = self._db.execute("SELECT value FROM info WHERE key = 'format'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO info VALUES ('format', ?)", (str(CACHE_FORMAT),))
                self._db.commit()
            elif int(row[0]) > CACHE_FORMAT:
                raise CacheUnavailable(f"embedding cache {self.path} was written by a newer mmtools")
        except (sqlite3.Error, ValueError) as exc:
            raise CacheUnavailable(f"embedding cache {self.path} cannot be used ({exc})") from None

    def vector(self, sha256: str, model: str) -> Any:
        import numpy as np

        with self._lock:
            row = self._db.execute("SELECT vector FROM vectors WHERE sha256 = ? AND model = ?",
                                   (sha256, model)).fetchone()
        return None if row is None else np.frombuffer(row[0], dtype=np.float32)

    def put(self, sha256: str, model: str, vector: Any) -> None:
        import numpy as np

        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", (sha256, model, blob))

    def model_key(self, location: str) -> str | None:
        """A hash of a local model directory's files (None for anything else): same files, same vectors."""
        directory = Path(location)
        if not directory.is_dir():
            return None
        digest = hashlib.sha256()
        for path in sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in MODEL_FILES):
            digest.update(f"{path.name}\0{file_sha256(path)}\0".encode())
        return "dir-" + digest.hexdigest()[:32]

    def fingerprint(self, model: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT fingerprint FROM models WHERE model = ?", (model,)).fetchone()
        return row[0] if row else None

    def remember_fingerprint(self, model: str, fingerprint: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO models VALUES (?, ?)", (model, fingerprint))
            self._db.commit()

    def commit(self) -> None:
        with self._lock:
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()


class ImageVectorCache:
    """The cache seen by one run of embed-images: one model key; what ``embed_images`` calls."""

    def __init__(self, cache: EmbeddingCache, model: str):
        self.cache = cache
        self.model = model

    def look_up(self, source: ImageSource) -> tuple[FileFacts, Any]:
        """The facts of the source's file, and its cached vector (None when it must be encoded)."""
        facts = file_facts(source.path)
        return facts, self.cache.vector(source.content_key(facts.sha256), self.model)

    def store(self, source: ImageSource, facts: FileFacts, vector: Any) -> None:
        self.cache.put(source.content_key(facts.sha256), self.model, vector)

    def commit(self) -> None:
        self.cache.commit()


def look_up(source: ImageSource, cache: ImageVectorCache | None) -> tuple[FileFacts, Any]:
    """File facts (and a cached vector, if any) for an image source; ImageDecodeError when its file cannot
    be read. A video frame is keyed by the video's content and the frame's time."""
    if cache is None:
        return file_facts(source.path), None
    return cache.look_up(source)


class LazyEncoder(Encoder):
    """Stands for a model and loads it only when an image actually needs encoding: a re-run over unchanged
    photos never loads it. ``fingerprint`` comes from the cache until the model is loaded."""

    def __init__(self, name: str, load: Callable[[], Encoder], fingerprint: str | None = None,
                 on_load: Callable[[Encoder], None] | None = None):
        self.name = name
        self._load = load
        self._fingerprint = fingerprint
        self._on_load = on_load
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def _get(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
                if self._on_load is not None:
                    self._on_load(self._encoder)
            return self._encoder

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = getattr(self._get(), "fingerprint", "") or ""
        return self._fingerprint

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self._get().dim

    @property
    def device(self) -> str:  # type: ignore[override]
        return self._get().device

    @property
    def text_rules(self) -> Any:  # type: ignore[override]
        return self._get().text_rules

    @property
    def image_size(self) -> int | None:
        return self._get().image_size

    def preprocess_images(self, images: Sequence[Any]) -> Any:
        return self._get().preprocess_images(images)

    def encode_image_batch(self, batch: Any) -> Any:
        return self._get().encode_image_batch(batch)

    @property
    def image_batches_at_once(self) -> int:
        return self._get().image_batches_at_once

    def encode_image_batch_alone(self, batch: Any) -> Any:
        return self._get().encode_image_batch_alone(batch)

    def encode_texts(self, texts: Sequence[str], on_truncated: Callable[[int], None] | None = None) -> Any:
        return self._get().encode_texts(texts, on_truncated)


def cached_image_encoder(model: str | None, device: str | None,
                         load: Callable[[str | None, str | None], Encoder] | None = None,
                         cache_path: str | os.PathLike[str] | None = None, variant: str = ""
                         ) -> tuple[Encoder, ImageVectorCache | None]:
    """The encoder and the cache for embed-images. A local model directory is keyed by its files and loaded
    lazily; any other model is loaded now and keyed by its fingerprint. ``variant`` names an encoding whose
    vectors differ from the model's own (``int8``): it is part of the key. An unusable cache is reported (a
    warning) and embedding goes on without it."""
    from mmtools.models import load_encoder, resolve_model

    load = load or load_encoder
    ref = resolve_model(model)
    try:
        cache = EmbeddingCache(cache_path)
        key = cache.model_key(ref.location) if ref.is_local else None
    except (CacheUnavailable, ImageDecodeError) as exc:
        log.warning("%s; embedding without it", exc)
        return load(model, device), None
    if key is not None and variant:
        key = f"{key}+{variant}"
    if key is None:
        encoder = load(model, device)
        return encoder, ImageVectorCache(cache, f"fp-{getattr(encoder, 'fingerprint', '') or ref.name}")
    encoder = LazyEncoder(ref.name, lambda: load(model, device), cache.fingerprint(key),
                          on_load=lambda e: cache.remember_fingerprint(key, getattr(e, "fingerprint", "") or ""))
    return encoder, ImageVectorCache(cache, key)
