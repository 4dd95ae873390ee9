"""Vectors of large embedding jobs as a NumPy file: ``FILE.npy`` holds every vector (float32, one row per record,
in order) and ``FILE.jsonl`` the records without them, each with its ``row`` in the array, as clip-retrieval
writes its embedding shards. ``numpy.load(FILE, mmap_mode="r")`` then reads them without parsing JSON.

The array is streamed to disk (memory stays flat however many records); its header, written last, is given a
fixed size. Both files are written beside their targets and renamed into place once complete: what was there
before stays whole until then.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterable

from mmtools.records import EMBEDDING, RecordWriter, atomic_path, decode_vector

HEADER_BYTES = 128  # magic, version, length and the padded dict: room for any shape


def records_path(npy: str | Path) -> Path:
    """Where the records of ``FILE.npy`` go: ``FILE.jsonl``."""
    return Path(npy).with_suffix(".jsonl")


def write_npy(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write the records' vectors to ``path`` (a .npy file) and the rest of them to ``records_path(path)``;
    return how many. ValueError for a record without a vector, or one whose size differs from the first's."""
    count, dim = 0, None
    with atomic_path(path) as vectors_tmp, atomic_path(records_path(path)) as records_tmp, \
            open(vectors_tmp, "wb") as vectors, open(records_tmp, "wb") as rest:
        vectors.write(b"\0" * HEADER_BYTES)
        writer = RecordWriter(rest)
        for record in records:
            if EMBEDDING not in record:
                raise ValueError(f"record {record.get('id', count + 1)} has no embedding")
            vector = decode_vector(record[EMBEDDING]).astype("<f4", copy=False)
            if dim is None:
                dim = len(vector)
            elif len(vector) != dim:
                raise ValueError(f"record {record.get('id', count + 1)} has {len(vector)} dimensions, the first "
                                 f"had {dim}: one array holds vectors of one model")
            vectors.write(vector.tobytes())
            writer.write({**{k: v for k, v in record.items() if k != EMBEDDING}, "row": count})
            count += 1
        vectors.seek(0)
        vectors.write(npy_header(count, dim or 0))
    return count


def npy_header(rows: int, dim: int) -> bytes:
    """A version 1.0 .npy header for a C-ordered little-endian float32 array of ``(rows, dim)``, padded to
    HEADER_BYTES."""
    text = ("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, dim)).encode("latin1")
    length = HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", length) + text + b" " * (length - len(text) - 1) + b"\n"
