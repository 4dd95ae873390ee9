"""Filters on stored fields (``--where``), applied before ranking so that ``k`` hits come back whenever ``k``
records match.

A condition is ``FIELD OP VALUE`` with OP one of ``=`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` ``~`` (contains).
``FIELD`` may be dotted (``gps.lat``). Values compare as numbers when both sides are numbers, as dates when
both are ISO dates (``2024-01-31``, ``2024-01-31T08:00:00``; EXIF's ``2024:01:31 08:00:00`` too; a date
without a time compares by day), else as text (case-insensitive, NFC). ``~`` is a substring test; a value
typed without accents ignores accents (``quan~ha noi`` finds ``Hà Nội``). A list field matches when any of
its elements does (tags given as ``{"label", "score"}`` compare by label); ``!=`` is the negation of ``=``,
so ``tags!=x`` keeps records none of whose tags is x, and records without the field.

Ranking among the matching rows: when they are few (``EXACT_SCAN_LIMIT``) their vectors are scored exactly;
otherwise FAISS searches with an ``IDSelector``, and a query the approximate search left short of ``k`` is
scored exactly after all. Either way every index kind gives ``k`` hits when ``k`` records match.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Collection, Iterable, Sequence

from mmtools.text.accents import fold, has_accents

OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~")
EXACT_SCAN_LIMIT = 20_000  # matching rows scored exactly rather than through FAISS
_CONDITION = re.compile(r"^\s*([^=!<>~\s][^=!<>~]*?)\s*(!=|<=|>=|=|<|>|~)\s*(.*?)\s*$", re.DOTALL)
_DATE = re.compile(r"^\d{4}[-:]\d{2}[-:]\d{2}")
_MISSING = object()


class FilterError(ValueError):
    """A condition that cannot be read; the message says why."""


def parse_condition(text: str) -> "Condition":
    match = _CONDITION.match(text)
    if match is None:
        raise FilterError(f"{text!r} is not FIELD OP VALUE (OP one of {' '.join(OPERATORS)})")
    field, op, value = match.groups()
    if op in ("<", "<=", ">", ">=") and _number(value) is None and _when(value) is None:
        raise FilterError(f"{text!r}: {op} compares numbers or ISO dates (2024-01-31), not {value!r}")
    return Condition(field, op, value)


def parse_conditions(texts: Iterable[str]) -> list["Condition"]:
    return [parse_condition(text) for text in texts]


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    def matches(self, record: dict[str, Any]) -> bool:
        values = [_element(v) for v in _values(_lookup(record, self.field))]
        if self.op == "!=":
            return not any(_equal(v, self.value) for v in values)
        test = {"=": _equal, "~": _contains}.get(self.op, self._compare)
        return any(test(v, self.value) for v in values)

    def _compare(self, value: Any, wanted: str) -> bool:
        order = _order(value, wanted)
        if order is None:
            return False
        return {"<": order < 0, "<=": order <= 0, ">": order > 0, ">=": order >= 0}[self.op]

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def record_matches(record: dict[str, Any], conditions: Sequence[Condition]) -> bool:
    return all(condition.matches(record) for condition in conditions)


@dataclass
class Selection:
    """The records a filter lets through, by FAISS row and by id."""

    rows: dict[int, str]

    @property
    def ids(self) -> Collection[str]:
        return set(self.rows.values())

    def __len__(self) -> int:
        return len(self.rows)


def select(reader: Any, conditions: Sequence[Condition]) -> Selection:
    """The records of an open index (``IndexReader``) that meet every condition."""
    return Selection(matching_rows(reader.scan(), conditions))


class SelectionCache:
    """The selections of one opened state of an index, by their conditions, so that a warm server reads the
    records once for each filter its users ask for rather than once a query. Bounded: the last ``entries``
    filters, each of at most ``max_rows`` records (a wider one is selected again each time)."""

    def __init__(self, entries: int = 16, max_rows: int = 250_000):
        import threading
        from collections import OrderedDict

        self._kept: OrderedDict[tuple[str, ...], Selection] = OrderedDict()
        self._lock = threading.Lock()
        self.entries, self.max_rows = entries, max_rows

    def select(self, reader: Any, key: tuple[str, ...], conditions: Sequence[Condition]) -> Selection:
        with self._lock:
            known = self._kept.get(key)
            if known is not None:
                self._kept.move_to_end(key)
                return known
        selection = select(reader, conditions)
        if len(selection) <= self.max_rows:
            with self._lock:
                self._kept[key] = selection
                while len(self._kept) > self.entries:
                    self._kept.popitem(last=False)
        return selection


def matching_rows(rows: Iterable[tuple[int, str, dict[str, Any]]], conditions: Sequence[Condition]
                  ) -> dict[int, str]:
    """``{row: id}`` of the ``(row, id, record)`` that meet every condition."""
    return {row: item_id for row, item_id, record in rows if record_matches(record, conditions)}


# ------------------------------------------------------------------------------------------------ values


def _lookup(record: dict[str, Any], field: str) -> Any:
    if field in record:
        return record[field]
    value: Any = record
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _values(value: Any) -> list[Any]:
    if value is _MISSING or value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _element(value: Any) -> Any:
    return value.get("label", value) if isinstance(value, dict) else value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return unicodedata.normalize("NFC", str(value)).casefold()


def _number(value: Any) -> int | float | None:
    """A number to compare: integers stay exact (Python compares int and float exactly), NaN is no number
    (it equals nothing, so ``year=nan`` must not match every record)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _when(value: Any) -> datetime | date | None:
    """A date (for a date without a time) or a naive UTC datetime, from ISO text; None if it is not one."""
    if not isinstance(value, str) or not _DATE.match(value.strip()):
        return None
    text = value.strip()
    text = text[:4] + "-" + text[5:7] + "-" + text[8:]  # EXIF writes 2024:01:31 08:00:00
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def _order(value: Any, wanted: str) -> int | None:
    """-1, 0, 1 as ``value`` is below, equal to or above ``wanted``; None when they do not compare."""
    a, b = _number(value), _number(wanted)
    if a is None or b is None:
        a, b = _when(value), _when(wanted)
        if a is None or b is None:
            return None
        if isinstance(b, datetime) != isinstance(a, datetime):  # a day against a moment: compare days
            a = a.date() if isinstance(a, datetime) else a
            b = b.date() if isinstance(b, datetime) else b
    return (a > b) - (a < b)


def _equal(value: Any, wanted: str) -> bool:
    order = _order(value, wanted)
    return order == 0 if order is not None else _text(value) == _text(wanted)


def _contains(value: Any, wanted: str) -> bool:
    if has_accents(wanted):
        return _text(wanted) in _text(value)
    return fold(wanted) in fold(str(value))


# ------------------------------------------------------------------------------------------------ ranking


def rank_among(index: Any, kind: str, params: dict[str, int], queries: Any, rows: Sequence[int], k: int,
               vectors_of: Callable[[Any], Any]) -> list[list[tuple[float, int]]]:
    """The ``k`` best ``(score, row)`` among ``rows`` for each query (unit vectors, inner product).

    ``vectors_of(rows)`` gives the exact vectors of those rows, or None where the index keeps none (ivfpq
    built with keep_vectors=0: then IVF lists are all probed instead).
    """
    import numpy as np

    rows = np.asarray(sorted(rows), dtype=np.int64)
    k = min(k, len(rows))
    if k <= 0:
        return [[] for _ in range(len(queries))]
    if len(rows) <= EXACT_SCAN_LIMIT:
        return _exact(index, kind, params, queries, rows, k, vectors_of)
    want = k * max(1, params.get("rerank", 1))
    scores, found = _selected_search(index, kind, params, queries, rows, want, exhaustive=False)
    results = []
    for i, query in enumerate(queries):
        candidates = found[i][found[i] >= 0]
        vectors = vectors_of(candidates) if len(candidates) else None
        ranked = (sorted(zip((vectors @ query).tolist(), candidates.tolist()), reverse=True) if vectors is not None
                  else list(zip(scores[i][found[i] >= 0].tolist(), candidates.tolist())))
        if len(ranked) < k:  # the approximate search missed some: score this query exactly
            ranked = _exact(index, kind, params, query[None, :], rows, k, vectors_of)[0]
        results.append(ranked[:k])
    return results


def _exact(index: Any, kind: str, params: dict[str, int], queries: Any, rows: Any, k: int,
           vectors_of: Callable[[Any], Any]) -> list[list[tuple[float, int]]]:
    import numpy as np

    best: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
    for start in range(0, len(rows), 4096):
        chunk = rows[start:start + 4096]
        vectors = vectors_of(chunk)
        if vectors is None:  # no exact vectors: probe every list, which reaches every matching code
            scores, found = _selected_search(index, kind, params, queries, rows, k, exhaustive=True)
            return [[(float(s), int(r)) for s, r in zip(qs, qr) if r >= 0] for qs, qr in zip(scores, found)]
        scores = np.asarray(queries, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
        for i, row_scores in enumerate(scores):
            top = np.argsort(-row_scores, kind="stable")[:k]
            best[i] = sorted(best[i] + [(float(row_scores[j]), int(chunk[j])) for j in top], reverse=True)[:k]
    return best


def _selected_search(index: Any, kind: str, params: dict[str, int], queries: Any, rows: Any, want: int,
                     exhaustive: bool) -> tuple[Any, Any]:
    """FAISS search restricted to ``rows`` through an IDSelector (in the id space of the index it is given)."""
    import faiss
    import numpy as np

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if kind == "ivfpq":
        selector = faiss.IDSelectorBatch(rows)
        nprobe = index.nlist if exhaustive else min(params["nprobe"], index.nlist)
        return index.search(queries, want, params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
    if kind == "ivf":  # IDMap2(IndexRefineFlat(IVF)): the selector reaches the IVF in its own positions
        ids = faiss.vector_to_array(index.id_map)
        selector = faiss.IDSelectorBatch(np.nonzero(np.isin(ids, rows))[0].astype(np.int64))
        ivf = faiss.extract_index_ivf(faiss.downcast_index(index.index).base_index)
        nprobe = ivf.nlist if exhaustive else min(params["nprobe"], ivf.nlist)
        search_params = faiss.IndexRefineSearchParameters(
            k_factor=float(max(1, params["rerank"])),
            base_index_params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
        return index.search(queries, want, params=search_params)
    selector = faiss.IDSelectorBatch(rows)
    search_params = (faiss.SearchParametersHNSW(sel=selector, efSearch=max(params["ef_search"], want))
                     if kind == "hnsw" else faiss.SearchParameters(sel=selector))
    return index.search(queries, want, params=search_params)
