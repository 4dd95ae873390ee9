"""Tagging data: JSONL records (``text`` and/or ``path``, ``tags``) or the design's CSV (``mota``, ``dacdiem``,
``image_path``), read through mmtools.train.data, with labels normalised like every other text."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from mmtools.errors import ProblemHandler, raise_problem
from mmtools.tag.labels import normalize_label
from mmtools.train.data import CSV_EXTENSIONS, Example, read_examples

JSONL_TEXT_COLUMNS = ("text", "caption", "captions")
CSV_TEXT_COLUMNS = ("mota", "text", "caption")
CSV_IMAGE_COLUMNS = ("image_path", "path", "image")
CSV_TAGS_COLUMNS = ("dacdiem", "tags")


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            return [name.strip() for name in next(csv.reader(handle, delimiter=delimiter), [])]
    except (OSError, UnicodeDecodeError):
        return []  # read_examples reports it properly


def read_tagging_examples(path: str | Path, *, text_columns: Sequence[str] | None = None,
                          image_column: str | None = None, tags_column: str | None = None,
                          tags_separator: str = ",", on_problem: ProblemHandler = raise_problem) -> list[Example]:
    """Examples with ``tags`` normalised and de-duplicated. Columns left as None are found by name: for
    JSONL ``text``/``caption``/``captions``, ``path``, ``tags``; for CSV also the design's ``mota``,
    ``image_path``, ``dacdiem``."""
    path = Path(path)
    if path.suffix.lower() in CSV_EXTENSIONS:
        header = _csv_header(path)
        text_columns = text_columns or [c for c in CSV_TEXT_COLUMNS if c in header] or list(CSV_TEXT_COLUMNS)
        image_column = image_column or next((c for c in CSV_IMAGE_COLUMNS if c in header), "image_path")
        tags_column = tags_column or next((c for c in CSV_TAGS_COLUMNS if c in header), "dacdiem")
    else:
        text_columns = text_columns or JSONL_TEXT_COLUMNS
        image_column = image_column or "path"
        tags_column = tags_column or "tags"
    examples = read_examples(path, image_column=image_column, text_columns=tuple(text_columns),
                             tags_column=tags_column, tags_separator=tags_separator, on_problem=on_problem)
    for example in examples:
        example.tags = list(dict.fromkeys(t for t in (normalize_label(tag) for tag in example.tags) if t))
    return examples


def example_text(example: Example) -> str | None:
    """All of an example's texts as one (several captions of one photo describe it together)."""
    texts = [t.strip() for t in example.texts if t.strip()]
    return " ".join(texts) if texts else None
