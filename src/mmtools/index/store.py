"""The FAISS index with SQLite metadata (``idx.faiss``, ``idx.faiss.meta.sqlite``, ``idx.faiss.segments/``).

The metadata records which model made the vectors (its name and fingerprint), their dimension, the metric
and normalisation, the index kind and its parameters, the record of every FAISS id (its row) and the manifest
of live segment files. The parts, one job each:

* ``info``: what an index records about itself, file names, shared small types;
* ``segments``: the segment files, the index file, the manifest's schema, garbage sweeping;
* ``reader``: ``IndexReader``, one committed state, searched segment by segment;
* ``writer``: ``IndexWriter``, one SQLite transaction per write, the only commit point;
* ``merging``: when segments merge (size-tiered) and how;
* ``locking``: one writer at a time;
* ``legacy``: reading and upgrading the single-file indexes of format 1 and 2.

This module keeps the names other modules import from it.
"""

from mmtools.index.info import (FORMAT, FORMAT_VERSION, METADATA_SUFFIX, Hit, IndexInfo, RecordRejected,  # noqa: F401
                                WriteSummary, canonical_item_id, metadata_path, model_mismatch, models_match,
                                segments_folder)
from mmtools.index.legacy import previous_path  # noqa: F401
from mmtools.index.locking import LOCK_SUFFIX  # noqa: F401
from mmtools.index.reader import IndexReader  # noqa: F401
from mmtools.index.writer import ADD_CHUNK, IndexWriter  # noqa: F401


def current_generation(index_path) -> str | None:
    """The generation of the committed state at ``index_path`` (what a warm reader compares), or None."""
    import json
    import sqlite3

    meta = metadata_path(index_path)
    if not meta.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{meta}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    return json.loads(row[0]) if row else None
