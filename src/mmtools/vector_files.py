"""Vectors of large embedding jobs as a NumPy file: ``FILE.npy`` holds every vector (float32, one row per record,
in order) and ``FILE.jsonl`` the records without them, each with its ``row`` in the array, as clip-retrieval
writes its embedding shards. ``numpy.load(FILE, mmap_mode="r")`` then reads them without parsing JSON.

Or as one Parquet file (``FILE.parquet``, pyarrow: the ``parquet`` extra): columns ``id``, ``path`` (null where
a record has none), ``embedding`` (fixed-size lists of float32) and ``record`` (the record's other fields as a
JSON object, so nothing is lost however records differ), written in row groups as records stream in.

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


PARQUET_ROWS = 4096  # records per row group: memory stays flat however many there are


def write_parquet(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write the records to ``path`` (a .parquet file); return how many. ValueError for a record without a
    vector or one whose size differs from the first's; MissingDependencyError without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        from mmtools.errors import MissingDependencyError

        raise MissingDependencyError("writing Parquet needs pyarrow", hint="pip install 'mmtools[parquet]', "
                                     "or write FILE.npy (NumPy) instead") from None
    import numpy as np
    import orjson

    count, dim, writer = 0, None, None
    ids: list[Any] = []
    paths: list[Any] = []
    vectors: list[Any] = []
    rest: list[str] = []

    def flush(out: Any) -> Any:
        if not ids:
            return out
        flat = pa.array(np.concatenate(vectors).astype("<f4", copy=False))
        table = pa.table({"id": pa.array(ids, pa.string()), "path": pa.array(paths, pa.string()),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
                          "record": pa.array(rest, pa.string())})
        if out is None:
            out = pq.ParquetWriter(str(tmp), table.schema)
        out.write_table(table)
        for column in (ids, paths, vectors, rest):
            column.clear()
        return out

    with atomic_path(path) as tmp:
        try:
            for record in records:
                if EMBEDDING not in record:
                    raise ValueError(f"record {record.get('id', count + 1)} has no embedding")
                vector = decode_vector(record[EMBEDDING])
                if dim is None:
                    dim = len(vector)
                elif len(vector) != dim:
                    raise ValueError(f"record {record.get('id', count + 1)} has {len(vector)} dimensions, the "
                                     f"first had {dim}: one file holds vectors of one model")
                ids.append(None if record.get("id") is None else str(record["id"]))
                paths.append(None if record.get("path") is None else str(record["path"]))
                vectors.append(np.asarray(vector, np.float32))
                rest.append(orjson.dumps({k: v for k, v in record.items()
                                          if k not in (EMBEDDING, "id", "path")}).decode())
                count += 1
                if len(ids) >= PARQUET_ROWS:
                    writer = flush(writer)
            writer = flush(writer)
            if writer is None:  # no record: an empty file with the columns still reads
                dim = dim or 1
                writer = pq.ParquetWriter(str(tmp), pa.schema([
                    ("id", pa.string()), ("path", pa.string()), ("embedding", pa.list_(pa.float32(), dim)),
                    ("record", pa.string())]))
        finally:
            if writer is not None:
                writer.close()
    return count


WRITERS = {".npy": write_npy, ".parquet": write_parquet}


def is_vector_file(path: str | Path | None) -> bool:
    """Whether ``-o path`` names a vector file (.npy, .parquet) rather than JSONL."""
    return path is not None and Path(path).suffix.lower() in WRITERS


def write_vector_file(records: Iterable[dict[str, Any]], path: str | Path) -> str:
    """Write the records to the vector file ``path`` names; what was written, in words."""
    suffix = Path(path).suffix.lower()
    count = WRITERS[suffix](records, path)
    if suffix == ".npy":
        return f"{count} vectors; their records in {records_path(path)}"
    return f"{count} records with their vectors (Parquet)"
