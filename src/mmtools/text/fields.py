"""Rewriting text fields of records in a stream: the library side of `mmtools segment`."""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

from mmtools.embed import batched
from mmtools.errors import Problem, ProblemHandler, UsageError, raise_problem
from mmtools.records import Record, field_texts, record_id
from mmtools.text.prepare import has_letters_or_digits

log = logging.getLogger("mmtools")

TextsTransform = Callable[[list[str]], list[str]]  # many texts in, as many out, same order

DEFAULT_MAX_CHARS = 1_000_000


def transform_fields(
    records: Iterable[Record],
    transform: TextsTransform,
    fields: list[str],
    *,
    into: str = "{field}",
    chunk_size: int = 5000,
    max_chars: int = DEFAULT_MAX_CHARS,
    on_problem: ProblemHandler = raise_problem,
) -> Iterator[Record]:
    """Apply ``transform`` to ``fields`` of each record, writing to ``into`` (``{field}`` is the field's name).

    Records are handled ``chunk_size`` at a time, so a transform that batches (or runs in several
    processes) gets whole chunks while the stream stays bounded in memory. A string field is transformed,
    a list of strings element by element. A record whose field is missing, not text, empty or longer than
    ``max_chars`` is reported and passed through with that field as it was.
    """
    _check_template(into)
    number = 0
    for chunk in batched(records, chunk_size):
        outputs = [dict(record) for record in chunk]
        slots: list[tuple[Record, str, int | None]] = []  # where each text's result goes
        texts: list[str] = []
        for output in outputs:
            number += 1
            where = record_id(output, f"record {number}")
            for field in fields:
                target = into.format(field=field)
                found = list(_texts_of(output, field, where, max_chars, on_problem))
                if found and isinstance(output[field], list):
                    output[target] = list(output[field])  # results replace this copy's items
                for index, text in found:
                    slots.append((output, target, index))
                    texts.append(text)
        for (output, target, index), result in zip(slots, transform(texts) if texts else []):
            if index is None:
                output[target] = result
            else:
                output[target][index] = result
        yield from outputs


def _check_template(into: str) -> None:
    try:
        into.format(field="text")
    except (KeyError, IndexError, ValueError):
        raise UsageError(f"--into {into!r} is not a field name; {{field}} is the only placeholder it may hold",
                         hint="e.g. --into text_seg, or --into '{field}_seg'") from None


def _texts_of(record: Record, field: str, where: str, max_chars: int,
              on_problem: ProblemHandler) -> Iterator[tuple[int | None, str]]:
    value = record.get(field)
    texts = field_texts(value)
    if texts is None:
        reason = "record has no {!r} field" if value is None else "field {!r} is not text (or a list of texts)"
        on_problem(Problem(where, reason.format(field) + ", passed through unchanged"))
        return
    for index, text in enumerate(texts):
        position = None if isinstance(value, str) else index
        label = field if position is None else f"{field}[{index}]"
        if not text.strip():
            on_problem(Problem(where, f"{label} is empty, passed through unchanged"))
        elif len(text) > max_chars:
            on_problem(Problem(where, f"{label} has {len(text):,} characters, over the limit of {max_chars:,} "
                                      "(--max-chars); passed through unchanged"))
        else:
            if not has_letters_or_digits(text):
                log.warning("%s: %s has no letters or digits, only normalised", where, label)
            yield position, text
