"""Building and updating an index from a stream of embedding records."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.index.store import IndexInfo, IndexWriter, RecordRejected
from mmtools.records import EMBEDDING, EMBEDDING_MODEL, Record, decode_vector, record_id


@dataclass
class IndexSummary:
    info: IndexInfo
    added: int
    replaced: int
    removed: int
    skipped: int


def index_records(
    records: Iterable[Record],
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    kind: str | None = None,
    params: dict[str, int] | None = None,
    rebuild: bool = False,
    remove_ids: Iterable[str] = (),
    on_problem: ProblemHandler = raise_problem,
    progress: Callable[[int], None] | None = None,
) -> IndexSummary:
    """Add embedding records to the index at ``path`` (created if absent), replacing records with the same id.

    Records that do not fit (no or malformed embedding, another model, another dimension) are reported and
    skipped. ``model`` is the model records without an ``embedding_model`` field are taken to come from, and
    the model a new index must hold. Nothing is written unless the whole stream was read.
    """
    skipped = 0
    with IndexWriter(path, model=model, kind=kind, params=params, rebuild=rebuild) as writer:
        writer.remove(remove_ids)
        for number, record in enumerate(records, 1):
            item_id = record_id(record, "")
            where = item_id or f"record {number}"
            try:
                if not item_id:
                    raise RecordRejected("record has no 'id'")
                vector = decode_vector(record.get(EMBEDDING))
                stored = {k: v for k, v in record.items() if k not in (EMBEDDING, EMBEDDING_MODEL)}
                writer.add(item_id, vector, stored, model=record.get(EMBEDDING_MODEL) or model)
            except (RecordRejected, ValueError) as exc:
                on_problem(Problem(where, f"{exc}, skipped"))
                skipped += 1
            if progress:
                progress(1)
    summary = writer.summary
    return IndexSummary(writer.info, summary.added, summary.replaced, summary.removed, skipped)
