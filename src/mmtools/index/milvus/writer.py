"""Creating and updating a collection: the same interface as ``IndexWriter``. Records are spooled to a private
temporary SQLite file while the input is read and upserted by id at ``commit``."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from typing import Any, Callable, Iterable

from mmtools.errors import IndexFileError
from mmtools.index import kinds
from mmtools.index.info import (IndexInfo, RecordRejected, WriteSummary, canonical_item_id, model_mismatch,
                                models_match)
from mmtools.index.milvus import texts as milvus_texts
from mmtools.index.milvus.collection import (INDEX_TYPES, MAX_ID_BYTES, count_records, create_collection, describe,
                                             full_text_version, info_property, iterate_rows, load_collection)
from mmtools.index.milvus.connection import connect, disconnect, milvus_exception, talking_to
from mmtools.index.milvus.location import ids_expression, parse_location
from mmtools.records import dumps_json, loads_json

STAGED = "__"  # a physical collection is named COLLECTION__<8 hex>; the alias COLLECTION names the live one
STALE_STAGING_S = 3600.0  # a staged collection no alias names, older than this, was left by a killed writer
MAX_RECORD_BYTES = 65_536  # Milvus's default limit for one JSON value
BATCH = 256  # rows per upsert, ids per lookup

SPOOL = """
CREATE TABLE pending (id TEXT PRIMARY KEY, vector BLOB NOT NULL, record BLOB NOT NULL, digest TEXT NOT NULL,
                      copied INTEGER NOT NULL DEFAULT 0);
CREATE TABLE removed (id TEXT PRIMARY KEY);
"""


class MilvusWriter:
    """Creates or updates a Milvus collection; the same interface as ``IndexWriter``. Nothing reaches Milvus
    until ``commit``; an exception in the ``with`` block discards what was spooled.

    ``lock_timeout`` and ``on_wait`` apply to a Milvus Lite file held by another process (a Milvus server takes
    many writers at once). ``compact`` asks Milvus to compact the collection after the write.

    ``text_fields`` are indexed for keyword search besides the usual texts, and remembered. A collection from
    before the keyword channel, or one given a new text field, is copied once into a new collection with
    every row's texts (the alias switches when the copy is complete, as for ``rebuild``); writes that other
    processes make to the old collection during that copy are not carried over, so run it alone.
    """

    def __init__(self, location: str, *, model: str | None = None, fingerprint: str | None = None,
                 kind: str | None = None, params: dict[str, int] | None = None, rebuild: bool = False,
                 compact: bool = False, lock_timeout: float | None = None,
                 on_wait: Callable[[], None] | None = None, text_fields: Any = (), root: Any = None):
        # --root applies to this run (relative paths of --sync); a collection does not record it
        self.root = None if root is None else os.path.abspath(root)
        self.location = parse_location(location)
        self.path = location
        self.summary = WriteSummary()
        self._compact = compact
        self._rebuild = rebuild
        self._info_changed = False  # the collection's mmtools info needs writing (not its records)
        self._recopy = False  # every stored row goes into a new collection (to gain text columns or fields)
        self._texts = True  # the collection written keeps texts (not on a Milvus before 2.5)
        text_fields = list(dict.fromkeys(text_fields))
        params = dict(params or {})
        self._check_layout(kind, params)
        self._spool = sqlite3.connect("")  # a private temporary file, deleted when closed
        self._spool.executescript(SPOOL)
        self._client = None
        try:
            self._client = connect(self.location, lock_timeout, on_wait)
            old_server = full_text_version(self._client, self.location)
            self._texts = old_server is None
            described = describe(self._client, self.location)
            # what a killed writer left: a staged collection never switched to, or the one it switched from
            sweep_staged(self._client, self.location, described.physical if described else None,
                         everything=self.location.lite)
            self._replaces = described.physical if described and rebuild else None  # switched over on commit
            if described is None or rebuild:
                kind = kind or "flat"
                self.collection = None
                self.info = IndexInfo(model=model or "", fingerprint=fingerprint or "", dim=0, kind=kind,
                                      params={**kinds.DEFAULT_PARAMS[kind], **params}, created_at=time.time(),
                                      text_fields=text_fields)
                self._info_changed = True
            else:
                self.collection, self.info, keeps_texts = described
                self._check_existing(model, fingerprint, kind, params)
                added = [name for name in text_fields if name not in self.info.text_fields]
                self.info.text_fields = [*self.info.text_fields, *added]
                self._recopy = self._texts and (bool(added) or not keeps_texts)
                self._texts = keeps_texts or self._recopy
                self._info_changed |= bool(added) and not self._recopy
                load_collection(self._client, self.location, self.collection)
            if old_server is not None and (described is None or rebuild or text_fields):  # once, not nightly
                self.summary.notes.append(f"this Milvus ({old_server}) keeps no full text (Milvus 2.5 or later "
                                          "does): the collection is searched by vector only")
        except BaseException:
            self.abort()
            raise

    def _check_layout(self, kind: str | None, params: dict[str, int]) -> None:
        if kind is not None and kind not in kinds.KINDS:
            raise IndexFileError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(kinds.KINDS)}")
        if kind is not None and kind not in INDEX_TYPES:
            raise IndexFileError(f"{self.path}: a Milvus collection is {', '.join(INDEX_TYPES)}, not {kind}",
                                 hint="use --kind hnsw or ivf for large collections")
        for key, value in params.items():
            if (reason := kinds.param_error(key, value)) is not None:
                raise IndexFileError(f"parameter {key}={value}: {reason}")
        applies = kinds.DEFAULT_PARAMS[kind or "flat"]
        unknown = sorted(set(params) - set(applies))
        if kind is not None and unknown:
            raise IndexFileError(f"parameter {unknown[0]!r} does not apply to a {kind} index",
                                 hint=f"{kind} takes: {', '.join(applies) or 'no parameters'}")

    def _check_existing(self, model: str | None, fingerprint: str | None, kind: str | None,
                        params: dict[str, int]) -> None:
        info = self.info
        if not models_match(info.model, info.fingerprint, model, fingerprint):
            reason = (f"holds vectors from model {info.model}, not {model}" if model != info.model
                      else model_mismatch(info.model, info.fingerprint, model, fingerprint))
            raise IndexFileError(f"index {self.path} {reason}", hint="use --rebuild to start over with the new model")
        if kind is not None and kind != info.kind:
            raise IndexFileError(f"index {self.path} is a {info.kind} index, not {kind}",
                                 hint="use --rebuild to change its kind")
        for key, value in params.items():
            if key not in info.params:
                raise IndexFileError(f"parameter {key!r} does not apply to {info.kind} index {self.path}")
            if key not in kinds.SEARCH_PARAMS and value != info.params[key]:
                raise IndexFileError(f"parameter {key!r} of index {self.path} is fixed when the index is built",
                                     hint="use --rebuild to build it again with the new value")
            self._info_changed |= info.params[key] != value
            info.params[key] = value

    # -- adding and removing
    def check(self, model: str | None, dim: int, fingerprint: str | None = None) -> None:
        """Raise RecordRejected unless a vector of ``dim`` from ``model`` fits this collection."""
        info = self.info
        if not models_match(info.model, info.fingerprint, model, fingerprint):
            if model == info.model:
                reason = model_mismatch(info.model, info.fingerprint, model, fingerprint)
                raise RecordRejected(f"embedding from {reason}")
            raise RecordRejected(f"embedding from model {model}, but index {self.path} holds model {info.model}")
        if info.dim and dim != info.dim:
            raise RecordRejected(f"embedding has {dim} dimensions, index {self.path} holds {info.dim}")

    def add(self, item_id: str, vector: Any, record: dict[str, Any], model: str | None = None,
            fingerprint: str | None = None) -> None:
        import numpy as np

        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        self.check(model, len(vector), fingerprint)
        item_id = canonical_item_id(item_id)
        blob = dumps_json(record)
        if len(item_id.encode("utf-8")) > MAX_ID_BYTES:
            raise RecordRejected(f"id is longer than the {MAX_ID_BYTES} bytes a Milvus key holds")
        if len(blob) > MAX_RECORD_BYTES:
            raise RecordRejected(f"stored fields take {len(blob)} bytes; a Milvus JSON value holds at most "
                                 f"{MAX_RECORD_BYTES}")
        info = self.info
        if not info.model:
            if not model:
                raise RecordRejected("record names no embedding_model and the index has none yet; pass --model")
            info.model = model
        elif model and model != info.model:
            info.model = model  # same fingerprint, new place: the model moved; remember where it is now
            self._info_changed = True
        if fingerprint and not info.fingerprint:
            info.fingerprint = fingerprint
            self._info_changed = True
        info.dim = info.dim or len(vector)
        unit = vector / max(float(np.linalg.norm(vector)), 1e-12)
        digest = hashlib.blake2b(unit.tobytes() + blob, digest_size=16).hexdigest()
        self._spool.execute("INSERT OR REPLACE INTO pending (id, vector, record, digest) VALUES (?, ?, ?, ?)",
                            (item_id, unit.tobytes(), blob, digest))
        self._spool.execute("DELETE FROM removed WHERE id = ?", (item_id,))

    def remove(self, item_ids: Iterable[str]) -> list[str]:
        """Remove records by id; returns the ids that were not in the index."""
        wanted = list(dict.fromkeys(item_ids))
        stored = self._stored_ids([canonical_item_id(i) for i in wanted])
        unknown = []
        for item_id in wanted:
            canonical = canonical_item_id(item_id)
            pending = self._spool.execute("DELETE FROM pending WHERE id = ?", (canonical,)).rowcount
            if canonical in stored:
                self._spool.execute("INSERT OR IGNORE INTO removed VALUES (?)", (canonical,))
            if pending or canonical in stored:
                self.summary.removed += 1
            else:
                unknown.append(item_id)
        return unknown

    def has(self, item_id: str) -> bool:
        item_id = canonical_item_id(item_id)
        if self._spool.execute("SELECT 1 FROM pending WHERE id = ?", (item_id,)).fetchone():
            return True
        return bool(self._stored_ids([item_id]))

    def stored(self) -> list[tuple[str, dict[str, Any]]]:
        """``(id, record)`` of every record in the collection as it stands in this write."""
        pending = {item_id: loads_json(blob) for item_id, blob in
                   self._spool.execute("SELECT id, record FROM pending")}
        removed = {item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")}
        result = []
        if self.collection is not None and not self._rebuild:
            for row in iterate_rows(self._client, self.location, self.collection, ["id", "record"]):
                if row["id"] not in removed and row["id"] not in pending:
                    result.append((row["id"], row["record"]))
        return result + list(pending.items())

    def _stored_ids(self, item_ids: list[str]) -> set[str]:
        """Which of these ids the collection holds (and this write has not removed)."""
        if self.collection is None or self._rebuild or not item_ids:
            return set()
        found: set[str] = set()
        for start in range(0, len(item_ids), BATCH):
            with talking_to(self.location, "looking up ids"):
                rows = self._client.query(self.collection, filter=ids_expression(item_ids[start:start + BATCH]),
                                          output_fields=["id"])
            found.update(row["id"] for row in rows)
        removed = {item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")}
        return found - removed

    # -- finishing
    def commit(self) -> IndexInfo:
        """Upsert what was spooled and delete what was removed; returns the collection's info."""
        try:
            if self._spool.execute("SELECT COUNT(*) FROM pending").fetchone()[0] == 0 and (
                    self.collection is None or self._rebuild):
                raise IndexFileError(f"no embeddings to index; {self.path} was not written")
            if self.collection is None or self._rebuild:
                self._fill_new_collection()
            elif self._recopy:
                self._copy_stored()
                self._replaces = self.collection
                self._fill_new_collection(compare_with=self.collection)
            elif self._changes_records():
                self._stage_and_switch()
            else:
                self._count_unchanged()
            if self._info_changed:
                self.info.updated_at = time.time()
                self.info.generation = uuid.uuid4().hex
                with talking_to(self.location, "recording the index info"):
                    self._client.alter_collection_properties(self.collection, properties=info_property(self.info))
            if self._compact:
                with talking_to(self.location, "compaction"):
                    self._client.compact(self.collection)
                self.summary.compacted = True
            self.info.count = self.info.ntotal = count_records(self._client, self.location, self.collection)
        except BaseException:
            self.abort()
            raise
        self.abort()  # nothing left to discard: closes the spool and the connection
        return self.info

    def _changes_records(self) -> bool:
        """Whether this write adds, replaces or removes any record (else only the info may change)."""
        if self._spool.execute("SELECT 1 FROM removed LIMIT 1").fetchone():
            return True
        cursor = self._spool.execute("SELECT id, digest FROM pending ORDER BY id")
        while batch := cursor.fetchmany(BATCH):
            stored = self._digests(self.collection, [item_id for item_id, _ in batch])
            if any(stored.get(item_id) != digest for item_id, digest in batch):
                return True
        return False

    def _count_unchanged(self) -> None:
        self.summary.unchanged += self._spool.execute("SELECT COUNT(*) FROM pending").fetchone()[0]

    def _stage_and_switch(self) -> None:
        """An update, all or nothing: the stored records this write leaves alone and its own go into a new
        collection, and the alias switches to it once it is complete (``_fill_new_collection``), so a reader,
        or a writer killed at any moment, sees the old collection whole or the new one. A writer that switched
        the alias meanwhile (another process on a server) is not overwritten: the copy starts again from
        theirs."""
        for _attempt in range(5):
            copied_from = self.collection
            self._spool.execute("DELETE FROM pending WHERE copied = 1")
            self.summary = WriteSummary(removed=self.summary.removed, notes=self.summary.notes)
            self._copy_stored(note=False)
            self._replaces = copied_from
            if self._fill_new_collection(compare_with=copied_from, expect=copied_from):
                self._info_changed = False
                return
            described = describe(self._client, self.location)
            if described is None:
                raise IndexFileError(f"Milvus collection {self.path} disappeared while it was written",
                                     hint="run again")
            self.collection = described.physical
            load_collection(self._client, self.location, self.collection)
        raise IndexFileError(f"Milvus collection {self.path} kept changing under this write (other writers); "
                             "nothing was written", hint="run again when the other writers are done")

    def _copy_stored(self, note: bool = True) -> None:
        """Spool every stored record this write leaves alone, to go into the new collection as it is."""
        import numpy as np

        removed = {item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")}
        copied = 0
        for row in iterate_rows(self._client, self.location, self.collection, ["id", "vector", "record", "digest"]):
            if row["id"] in removed:
                continue
            vector = np.asarray(row["vector"], dtype=np.float32).tobytes()
            copied += self._spool.execute("INSERT OR IGNORE INTO pending VALUES (?, ?, ?, ?, 1)",
                                          (row["id"], vector, dumps_json(row["record"]), row["digest"])).rowcount
        if note:
            self.summary.notes.append(f"{copied} stored records copied into a new collection that keeps their "
                                      "texts for keyword search")

    def _fill_new_collection(self, compare_with: str | None = None, expect: str | None = None) -> bool:
        """Fill a collection of its own, then point the alias at it: readers see the old collection (or none)
        until the new one is complete. Another writer may have created the collection meanwhile: then this
        write goes into theirs. ``expect``: switch only if the alias still names this collection (False, and
        nothing switched, otherwise)."""
        physical = f"{self.location.collection}{STAGED}{uuid.uuid4().hex[:8]}"
        self.info.generation = uuid.uuid4().hex
        self.info.updated_at = time.time()
        create_collection(self._client, self.location, physical, self.info, self._texts)
        try:
            self._write(physical, fresh=True, compare_with=compare_with)
            previous = self._replaces
            if expect is not None:
                now = describe(self._client, self.location)
                if now is None or now.physical != expect:
                    with talking_to(self.location, "dropping an unneeded collection"):
                        self._client.drop_collection(physical)
                    return False
            published = self._publish(physical, replace=previous is not None)
        except BaseException:
            _drop_quietly(self._client, self.location, physical)
            raise
        if published:
            self.collection, self._info_changed = physical, False
            if previous is not None and self.location.lite:
                # Milvus Lite has one process at a time: the old collection can go now. On a server another
                # writer (or a reader) may still be reading it: a later writer sweeps it once it is stale.
                _drop_quietly(self._client, self.location, previous)
            return True
        with talking_to(self.location, "dropping an unneeded collection"):
            self._client.drop_collection(physical)
        described = describe(self._client, self.location)
        if described is None:
            raise IndexFileError(f"Milvus collection {self.path} disappeared while it was written", hint="run again")
        mine = self.info
        self.collection, self.info, self._texts = described
        self._info_changed = False  # theirs stands
        load_collection(self._client, self.location, self.collection)
        if not models_match(self.info.model, self.info.fingerprint, mine.model, mine.fingerprint) \
                or self.info.dim != mine.dim:
            raise IndexFileError(f"index {self.path} was created meanwhile by another writer with model "
                                 f"{self.info.model} ({self.info.dim} dimensions); nothing was written",
                                 hint="use --rebuild to start over with the new model")
        self.summary = WriteSummary(removed=self.summary.removed)
        self._stage_and_switch()
        return True

    def _publish(self, physical: str, replace: bool) -> bool:
        """Point the alias at ``physical``; False when another writer's alias got there first."""
        error = milvus_exception()
        with talking_to(self.location, "naming the collection"):
            if replace:
                self._client.alter_alias(physical, self.location.collection)
                return True
            try:
                self._client.create_alias(physical, self.location.collection)
                return True
            except error:
                if self._client.has_collection(self.location.collection):
                    return False
                raise

    def _write(self, physical: str, fresh: bool, compare_with: str | None = None) -> None:
        """Upsert the spooled records that differ from the stored ones, then delete the removed ones. Into a
        ``fresh`` collection every record goes; ``compare_with`` is the one it replaces (for the counts)."""
        import numpy as np

        compared = compare_with or (None if fresh else physical)
        cursor = self._spool.execute("SELECT id, vector, record, digest, copied FROM pending ORDER BY id")
        while batch := cursor.fetchmany(BATCH):
            stored = {} if compared is None else self._digests(compared, [row[0] for row in batch if not row[4]])
            rows = []
            for item_id, vector, record, digest, copied in batch:
                before = stored.get(item_id)
                if copied:
                    self.summary.unchanged += self._recopy  # a recopy counts what it carried over
                elif before == digest:
                    self.summary.unchanged += 1
                    if not fresh:
                        continue
                elif before is None:
                    self.summary.added += 1
                else:
                    self.summary.replaced += 1
                record = loads_json(record)
                texts = milvus_texts.columns(record, self.info.text_fields) if self._texts else {}
                rows.append({"id": item_id, "vector": np.frombuffer(vector, dtype=np.float32).tolist(),
                             "record": record, "digest": digest, **texts})
            if rows:
                with talking_to(self.location, "upsert"):
                    self._client.upsert(physical, rows)
        if fresh:
            return
        removed = [item_id for (item_id,) in self._spool.execute("SELECT id FROM removed")]
        for start in range(0, len(removed), BATCH):
            with talking_to(self.location, "delete"):
                self._client.delete(physical, filter=ids_expression(removed[start:start + BATCH]))

    def _digests(self, physical: str, item_ids: list[str]) -> dict[str, str]:
        if not item_ids:
            return {}
        with talking_to(self.location, "looking up ids"):
            rows = self._client.query(physical, filter=ids_expression(item_ids), output_fields=["id", "digest"])
        return {row["id"]: row["digest"] for row in rows}

    def abort(self) -> None:
        """Discard what was spooled; the collection stays as it was (unless a commit had begun)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._client is not None:
            disconnect(self.location, self._client)
            self._client = None

    def __enter__(self) -> "MilvusWriter":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _drop_quietly(client: Any, where: Any, physical: str) -> None:
    """Drop a collection no alias names; if the server is gone, a later writer sweeps it."""
    try:
        with talking_to(where, "dropping a collection no longer named"):
            client.drop_collection(physical)
    except (IndexFileError, OSError):
        pass


def sweep_staged(client: Any, where: Any, live: str | None, everything: bool) -> int:
    """Drop the staged collections of this alias that it does not name: left by a writer killed before its
    switch, or the old one a killed writer had switched from. ``everything``: all of them (Milvus Lite, one
    writer at a time); else only those older than ``STALE_STAGING_S`` (another writer may be filling one)."""
    import json

    from mmtools.index.milvus.collection import INFO_PROPERTY

    prefix = f"{where.collection}{STAGED}"
    dropped = 0
    with talking_to(where, "listing collections"):
        names = [name for name in client.list_collections() if name.startswith(prefix) and name != live]
    for name in names:
        if not everything:
            try:
                with talking_to(where, "looking up a collection"):
                    properties = client.describe_collection(name).get("properties") or {}
                updated = json.loads(properties.get(INFO_PROPERTY, "{}")).get("updated_at", 0)
            except (IndexFileError, ValueError):
                continue
            if time.time() - float(updated or 0) < STALE_STAGING_S:
                continue
        _drop_quietly(client, where, name)
        dropped += 1
    return dropped
