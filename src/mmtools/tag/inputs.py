"""What `mmtools tag` reads: JSONL records (files or stdin), or image files, folders and globs."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from mmtools.errors import ProblemHandler, raise_problem
from mmtools.images import JSONL_EXTENSIONS, discover_images
from mmtools.records import STDIN, Record, read_records


class ImageFileRecord(dict):
    """A record made from an image file, folder or glob (not read from JSONL): it has no text by
    construction, so a tagger that can read images alone (late fusion) tags it from its image."""


def records_from_inputs(inputs: Iterable[str], on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
    """``-`` and ``*.jsonl`` files give their records; anything else is an image file, folder or glob and
    gives ``{"id", "path"}`` records (ImageFileRecord), in the order found."""
    for item in inputs:
        if item == STDIN or (Path(item).suffix.lower() in JSONL_EXTENSIONS and Path(item).is_file()):
            yield from read_records([item], on_problem)
        else:
            for source in discover_images([item], on_problem=on_problem):
                yield ImageFileRecord({**source.record, "id": source.id})
