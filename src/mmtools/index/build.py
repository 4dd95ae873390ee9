"""Building and updating an index from a stream of embedding records; syncing it with a folder; merging."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from mmtools.errors import IndexFileError, Problem, ProblemHandler, raise_problem
from mmtools.images import canonical_path_id
from mmtools.index.backends import index_exists, open_reader, open_writer, resolve_location
from mmtools.index.locate import record_location, safe_path  # noqa: F401 (safe_path: re-exported)
from mmtools.index.store import IndexInfo, RecordRejected, model_mismatch, models_match
from mmtools.index.sync_guard import check_removal
from mmtools.records import (EMBEDDING, EMBEDDING_FINGERPRINT, EMBEDDING_MODEL, Record, decode_vector,
                             record_id)
from mmtools.video import video_of


@dataclass
class IndexSummary:
    info: IndexInfo
    added: int
    replaced: int
    removed: int
    skipped: int
    unchanged: int = 0
    compacted: bool = False
    notes: list[str] = field(default_factory=list)  # what the user should know about this write


def index_records(
    records: Iterable[Record],
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    kind: str | None = None,
    params: dict[str, int] | None = None,
    rebuild: bool = False,
    remove_ids: Iterable[str] = (),
    sync: bool = False,
    root: str | os.PathLike[str] | None = None,
    compact: bool = False,
    lock_timeout: float | None = None,
    on_wait: Callable[[], None] | None = None,
    on_problem: ProblemHandler = raise_problem,
    progress: Callable[[int], None] | None = None,
    text_fields: Iterable[str] = (),
    allow_removal: bool = False,
) -> IndexSummary:
    """Add embedding records to the index at ``path`` (created if absent), replacing records with the same id.

    Records that do not fit (no or malformed embedding, another model, another dimension) are reported and
    skipped; records identical to the stored ones change nothing. ``model`` is the model records without an
    ``embedding_model`` field are taken to come from, and the model a new index must hold. ``remove_ids``
    that are not in the index are reported. With ``sync``, once the whole stream is read, records that were
    not in it and whose file is gone are removed: the file is located as ``record_location`` says (``root``,
    else the root the index recorded, else the record's absolute id), never against the working folder; a
    record whose file cannot be located is kept and reported. ``root`` is recorded in the index. Nothing is
    written unless the whole stream was read. ``text_fields``: fields to index for full-text search besides
    the usual ones (see ``mmtools.index.fulltext``); the index remembers them. A sync whose root is missing,
    empty or not the index's, or that would remove more than half the records, is refused (``SyncRefused``,
    nothing written) unless ``allow_removal``.
    """
    skipped = 0
    seen: set[str] = set()
    seen_videos: set[str] = set()  # videos whose frames came in this run: their other frames are stale
    with open_writer(path, model=model, kind=kind, params=params, rebuild=rebuild, compact=compact,
                     lock_timeout=lock_timeout, on_wait=on_wait, text_fields=text_fields, root=root) as writer:
        for item_id in writer.remove(remove_ids):
            as_path = canonical_path_id(item_id, None if root is None else str(root))
            if as_path == item_id or writer.remove([as_path]):  # a path is also tried as the file's id
                on_problem(Problem(item_id, "no record with this id in the index; nothing removed"))
        for number, record in enumerate(records, 1):
            item_id = record_id(record, "")
            where = item_id or f"record {number}"
            try:
                if not item_id:
                    raise RecordRejected("record has no 'id'")
                vector = decode_vector(record.get(EMBEDDING))
                stored = {k: v for k, v in record.items() if k not in (EMBEDDING, EMBEDDING_MODEL,
                                                                      EMBEDDING_FINGERPRINT)}
                fingerprint = record.get(EMBEDDING_FINGERPRINT)
                writer.add(item_id, vector, stored, model=record.get(EMBEDDING_MODEL) or model,
                           fingerprint=fingerprint if isinstance(fingerprint, str) else None)
                seen.add(item_id)
                if (video := video_of(record)) is not None:
                    seen_videos.add(video)
            except (RecordRejected, ValueError, TypeError) as exc:
                on_problem(Problem(where, f"{exc}, skipped"))
                skipped += 1
            if progress:
                progress(1)
        if sync:
            def unlocated(item_id: str) -> None:
                on_problem(Problem(item_id, "its file cannot be located from here (a relative path and no "
                                            "--root), kept"))

            stored = writer.stored()
            gone = list(gone_records(stored, seen, writer.root, on_unlocated=unlocated))
            check_removal(str(path), gone, len(stored), writer.root, getattr(writer, "previous_root", None),
                          allow_removal)
            writer.remove(list(gone_records(stored, seen, writer.root, replaced_videos=seen_videos)))
    summary = writer.summary
    return IndexSummary(writer.info, summary.added, summary.replaced, summary.removed, skipped,
                        summary.unchanged, summary.compacted, list(summary.notes))


def gone_records(stored: Iterable[tuple[str, Record]], seen: set[str], root: str | os.PathLike[str] | None,
                 on_unlocated: Callable[[str], None] | None = None,
                 replaced_videos: set[str] = frozenset()) -> Iterator[str]:
    """Ids of stored records not ``seen`` in this run whose file no longer exists, and frames not seen of
    the ``replaced_videos`` (a video is one source: frames of a changed video are all new).

    A record whose file still exists stays (the run that fed the index may have stopped early), and so does
    one with no ``path``, one whose path leads outside ``root`` (the metadata never steers mmtools outside the
    folder the user named), and one whose file cannot be located for certain (``on_unlocated`` is told).
    """
    from mmtools.index.store import canonical_item_id

    seen = {canonical_item_id(item_id) for item_id in seen}
    for item_id, record in stored:
        if item_id in seen:
            continue
        if replaced_videos and video_of(record) in replaced_videos:
            yield item_id
            continue
        path = record.get("path")
        if not isinstance(path, str) or not path:
            continue
        where = record_location(item_id, path, root)
        if where is None:
            if on_unlocated is not None:
                on_unlocated(item_id)
        elif not os.path.lexists(where):
            yield item_id


def merge_parts(parts: Iterable[str | os.PathLike[str]], into: str | os.PathLike[str] | None = None
                ) -> Iterator[Record]:
    """The records of several indexes (e.g. one per shard), with their vectors, checking first that all of
    them (and the index ``into``, if it exists) hold vectors from one model."""
    parts = list(parts)
    infos = []
    for part in parts:
        with open_reader(part) as reader:
            infos.append((part, reader.info))
    if into is not None and resolve_location(into) not in {resolve_location(p) for p in parts} \
            and index_exists(into):
        try:
            with open_reader(into) as reader:
                infos.insert(0, (into, reader.info))
        except IndexFileError:
            pass  # the writer reports an unusable target itself
    first_path, first = infos[0]
    for part, info in infos[1:]:
        if not models_match(first.model, first.fingerprint, info.model, info.fingerprint):
            raise IndexFileError(f"index {part} holds vectors from "
                                 f"{model_mismatch(first.model, first.fingerprint, info.model, info.fingerprint)}"
                                 f" (in {first_path})", hint="merge only indexes built with the same model")
        if info.dim != first.dim:
            raise IndexFileError(f"index {part} holds {info.dim}-dimensional vectors, {first_path} holds "
                                 f"{first.dim}", hint="merge only indexes built with the same model")
    for part in parts:
        with open_reader(part) as reader:
            yield from reader.export()


def part_layout(part: str | os.PathLike[str]) -> tuple[str, dict[str, int]]:
    """The kind and build parameters of an index, for a merged index that should be built like its parts."""
    with open_reader(part) as reader:
        return reader.info.kind, dict(reader.info.params)
