"""What an index records about itself (``IndexInfo``), the names of its files, and the small types its
reader and writer share."""

from __future__ import annotations

import json
import os
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mmtools import __version__
from mmtools.errors import IndexFileError

FORMAT = "mmtools-index"
# 2: generations, item digests, vectors kept for ivfpq; 3: segments and a manifest; 4: IVF segments written
# without the centroids they share with the trained index (older mmtools would search them with none)
FORMAT_VERSION = 4
SEGMENTED = 3  # the first format whose vectors live in segment files
METADATA_SUFFIX = ".meta.sqlite"
SEGMENTS_SUFFIX = ".segments"


def metadata_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}{METADATA_SUFFIX}")


def segments_folder(index_path: str | os.PathLike[str]) -> Path:
    return Path(f"{index_path}{SEGMENTS_SUFFIX}")


def canonical_item_id(item_id: str) -> str:
    """Ids compare in NFC, so a name typed on Linux finds the same name written by macOS (NFD)."""
    return unicodedata.normalize("NFC", item_id)


class RecordRejected(ValueError):
    """A record that does not fit this index (other model, other dimension); the message says why."""


@dataclass
class IndexInfo:
    model: str
    dim: int
    kind: str = "flat"
    params: dict[str, int] = field(default_factory=dict)
    metric: str = "inner_product"
    normalized: bool = True
    count: int = 0  # live records
    ntotal: int = 0  # vectors in the segment files, tombstones (rows no longer in the metadata) included
    next_row: int = 0
    faiss_bytes: int = 0  # of every segment file and the shared trained index
    fingerprint: str = ""  # of the model's weights and text rules; "" when unknown
    generation: str = ""  # of the write that committed this state (the manifest's generation)
    trained: dict[str, int] = field(default_factory=dict)  # IVF: vectors trained on, lists built...
    quantizer: str = ""  # IVF: the file (in the segments folder) of the trained, empty index every segment copies
    quantizer_checksum: str = ""  # ... and its checksum (see segments.checksum)
    segments: int = 0  # live segment files
    next_segment: int = 1  # the manifest's number for the next segment
    index_id: str = ""  # written into the index file too, so that files of two indexes are never paired
    upgraded_from: str = ""  # the format-2 generation this index was upgraded from (its old file may remain)
    text_fields: list[str] = field(default_factory=list)  # indexed for keyword search besides the usual ones
    root: str = ""  # of a rooted index (--root), absolute; relative record paths are inside it
    root_from_index: str = ""  # ... and as seen from the index's folder, so the two can move together
    format_version: int = FORMAT_VERSION
    mmtools_version: str = __version__
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_rows(self) -> list[tuple[str, str]]:
        values = {"format": FORMAT, **self.__dict__}
        return [(key, json.dumps(value)) for key, value in values.items()]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]], where: str) -> "IndexInfo":
        try:
            values = {key: json.loads(value) for key, value in rows}
        except ValueError:
            raise IndexFileError(f"index metadata {where} holds unreadable values",
                                 hint="rebuild the index with mmtools index --rebuild") from None
        if values.pop("format", None) != FORMAT:
            raise IndexFileError(f"{where} is not an mmtools index metadata file")
        version = values.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexFileError(f"index {where} was written by a newer mmtools (format {version}; this mmtools "
                                 f"reads up to {FORMAT_VERSION})", hint="upgrade mmtools")
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def read_info(connection: sqlite3.Connection, where: str) -> IndexInfo:
    try:
        rows = connection.execute("SELECT key, value FROM info").fetchall()
    except sqlite3.DatabaseError as exc:
        raise IndexFileError(f"index metadata {where} is unreadable ({exc})",
                             hint="rebuild the index with mmtools index --rebuild") from None
    return IndexInfo.from_rows(rows, where)


@dataclass
class Hit:
    id: str
    score: float
    record: dict[str, Any]
    path: str | None = None  # the record's file, locatable from any working folder; None when unknown


@dataclass
class WriteSummary:
    added: int = 0
    replaced: int = 0
    removed: int = 0
    unchanged: int = 0
    compacted: bool = False
    merged: int = 0  # segments merged into others by this write
    notes: list[str] = field(default_factory=list)  # what the user should know (e.g. a small IVF sample)


def models_match(index_model: str, index_fingerprint: str, model: str | None, fingerprint: str | None) -> bool:
    """Fingerprints decide when both sides have one (a moved model matches, a retrained one does not);
    otherwise names do. A side that names no model matches anything."""
    if not (model or fingerprint) or not (index_model or index_fingerprint):
        return True
    if fingerprint and index_fingerprint:
        return fingerprint == index_fingerprint
    return model == index_model


def model_mismatch(index_model: str, index_fingerprint: str, model: str | None, fingerprint: str | None) -> str:
    """The reason ``models_match`` said no, in words."""
    if model == index_model:
        return (f"model {model} has changed since the index was built (fingerprint {fingerprint}, the index "
                f"holds {index_fingerprint}): retrained or replaced in the same place?")
    return f"model {model}, but the index holds model {index_model}"
