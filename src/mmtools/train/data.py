"""Training and evaluation data: JSONL records or CSV rows, with an image path, texts and tags.

Both `train retrieval` and `train tagger` read their data here, so the two accept the same files, resolve
image paths the same way (relative to the data file), and report bad rows and unreadable images alike.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from mmtools.errors import MmtoolsError, Problem, ProblemHandler, UsageError, raise_problem
from mmtools.images import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image
from mmtools.records import field_texts, read_records, record_id

CSV_EXTENSIONS = frozenset({".csv", ".tsv"})
CHECK_DRAFT_SIZE = 64  # decode at reduced scale when checking: enough to prove the file is an image


class DataError(MmtoolsError):
    """A data file that cannot be used at all (missing, empty, no usable rows, bad columns)."""


@dataclass
class Example:
    """One training or evaluation example; ``where`` names it in messages (``file:row`` or its id)."""

    id: str
    where: str
    image: str | None = None  # resolved path
    texts: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str | None:
        return self.texts[0] if self.texts else None


def read_examples(path: str | os.PathLike[str], *, image_column: str | None = "path",
                  text_columns: Sequence[str] = ("caption", "captions"), tags_column: str | None = None,
                  tags_separator: str = ",", on_problem: ProblemHandler = raise_problem) -> list[Example]:
    """Examples from a JSONL file or a CSV/TSV file with a header row; image paths resolved against the file's
    folder. A row with neither an image nor a text (nor tags, when asked for) is reported and skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist" if not path.exists() else f"{path} is not a file")
    base = path.resolve().parent
    rows = _csv_rows(path) if path.suffix.lower() in CSV_EXTENSIONS else _jsonl_rows(path, on_problem)
    examples = []
    for where, row in rows:
        example = _example(where, row, base, image_column, text_columns, tags_column, tags_separator,
                           on_problem)
        if example is not None:
            examples.append(example)
    if not examples:
        raise DataError(f"data file {path} holds no usable examples",
                        hint=_columns_hint(image_column, text_columns, tags_column))
    return examples


def _jsonl_rows(path: Path, on_problem: ProblemHandler) -> Iterable[tuple[str, dict[str, Any]]]:
    for number, record in enumerate(read_records([str(path)], on_problem), 1):
        yield record_id(record, f"{path}:{number}"), record


def _csv_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            if not reader.fieldnames:
                raise DataError(f"CSV file {path} has no header row")
            for number, row in enumerate(reader, 2):
                yield f"{path}:{number}", {k.strip(): v for k, v in row.items() if k is not None}
    except UnicodeDecodeError as exc:
        raise DataError(f"CSV file {path} is not valid UTF-8 (byte {exc.start + 1})",
                        hint="convert it, e.g. iconv -f CP1258 -t UTF-8") from None


def _example(where: str, row: dict[str, Any], base: Path, image_column: str | None,
             text_columns: Sequence[str], tags_column: str | None, separator: str,
             on_problem: ProblemHandler) -> Example | None:
    image = None
    if image_column:
        value = row.get(image_column)
        if isinstance(value, str) and value.strip():
            image = value.strip() if os.path.isabs(value.strip()) else str(base / value.strip())
    texts: list[str] = []
    for column in text_columns:
        value = row.get(column)
        if isinstance(value, str) and value.strip().startswith("[") and column.endswith("s"):
            value = _json_list(value)
        found = field_texts(value)
        if found:
            texts.extend(t for t in found if t.strip())
    tags: list[str] = []
    if tags_column:
        value = row.get(tags_column)
        if isinstance(value, str):
            tags = [t.strip() for t in value.split(separator) if t.strip()]
        elif isinstance(value, list):
            tags = [str(t).strip() for t in value if str(t).strip()]
    if image is None and not texts:
        on_problem(Problem(where, "row has no image path and no text, skipped"))
        return None
    identifier = row.get("id")
    return Example(str(identifier) if identifier not in (None, "") else where, where, image, texts, tags, row)


def _json_list(value: str) -> Any:
    import orjson

    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _columns_hint(image_column: str | None, text_columns: Sequence[str], tags_column: str | None) -> str:
    wanted = [c for c in (image_column, *text_columns, tags_column) if c]
    return f"each row needs some of the fields {', '.join(wanted)}; choose the columns with the command's flags"


def check_images(examples: list[Example], *, strict: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
                 on_problem: ProblemHandler = raise_problem) -> list[Example]:
    """The examples whose image opens and decodes (examples without an image pass). Each bad image is
    reported and its example dropped; with ``strict``, the first bad image stops everything."""
    kept = []
    for example in examples:
        if example.image is not None:
            try:
                load_image(example.image, max_pixels=max_pixels, draft_size=CHECK_DRAFT_SIZE)
            except ImageDecodeError as exc:
                if strict:
                    raise DataError(f"{example.image} ({example.where}): {exc}",
                                    hint="fix or remove it, or leave out --strict to skip bad images") from None
                on_problem(Problem(f"{example.image} ({example.where})", f"{exc}, skipped"))
                continue
        kept.append(example)
    return kept


def require_examples(examples: list[Example], what: str, *, need_image: bool = False,
                     need_text: bool = False) -> list[Example]:
    """Raise a clear error when nothing usable is left (e.g. a validation set whose images all failed)."""
    usable = [e for e in examples if (not need_image or e.image) and (not need_text or e.texts)]
    if not usable:
        needs = " and ".join(n for n, wanted in (("an image", need_image), ("a text", need_text)) if wanted)
        raise DataError(f"the {what} has no usable examples" + (f" with {needs}" if needs else ""),
                        hint="check the file's paths and columns")
    return usable


class ExampleDataset:
    """A map-style dataset of examples whose images are decoded where it is read: in DataLoader workers.

    Items are ``(example, image)``; ``image`` is an RGB PIL image or None (no image, or it failed to decode
    after checking; the task's collate decides what to do with it).
    """

    def __init__(self, examples: Sequence[Example], *, image_size: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, load_images: bool = True):
        self.examples = list(examples)
        self.image_size = image_size
        self.max_pixels = max_pixels
        self.load_images = load_images

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[Example, Any]:
        example = self.examples[index]
        image = None
        if self.load_images and example.image is not None:
            try:
                image = load_image(example.image, max_pixels=self.max_pixels, draft_size=self.image_size)
            except ImageDecodeError:
                image = None
        return example, image


def image_key(example: Example) -> str:
    """What makes two rows the same picture: the image file, resolved (``./a/../a/1.jpg`` is ``a/1.jpg``,
    a symlink is its target); an example without an image is only itself."""
    return os.path.realpath(example.image) if example.image else f"id:{example.id}:{example.where}"


def group_by_image(examples: Sequence[Example]) -> list[Example]:
    """One example per image: rows naming the same file (the usual Flickr/COCO CSV, one row per caption)
    merge into the first, their texts in order and their tags joined. Without this each row would be an
    image of its own, and the copies would tie against each other in every ranking."""
    merged: dict[str, Example] = {}
    for example in examples:
        key = image_key(example)
        first = merged.get(key)
        if first is None:
            merged[key] = dataclasses.replace(example, texts=list(example.texts), tags=list(example.tags))
            continue
        first.texts.extend(example.texts)
        first.tags.extend(tag for tag in example.tags if tag not in first.tags)
    return list(merged.values())


def split_examples(examples: list[Example], fraction: float, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """A deterministic (train, held-out) split by image: ``fraction`` of the distinct images (and every row
    of each) are held out, so no picture is both learnt and used to judge the learning."""
    import random

    if not 0 < fraction < 1:
        raise UsageError(f"split fraction {fraction} is not between 0 and 1")
    keys = list(dict.fromkeys(image_key(e) for e in examples))
    random.Random(seed).shuffle(keys)
    held = set(keys[:max(1, int(round(len(keys) * fraction)))])
    return ([e for e in examples if image_key(e) not in held], [e for e in examples if image_key(e) in held])


# Reading captioned images needs no torch: eval retrieval on ONNX Runtime reads them without importing it.


def usable_pairs(examples: Sequence[Example], what: str, on_problem: ProblemHandler = raise_problem) -> list[Example]:
    """Examples with an image and at least one caption; the others are reported and left out."""
    kept = []
    for example in examples:
        if example.image is None:
            on_problem(Problem(example.where, "has no image path, skipped"))
        elif not example.texts:
            on_problem(Problem(example.where, "has no caption (empty or missing), skipped"))
        else:
            kept.append(example)
    return require_examples(kept, what, need_image=True, need_text=True)


def load_pairs(path: str | Path, what: str, *, image_column: str = "path",
               caption_columns: Sequence[str] = ("caption", "captions"), strict: bool = False,
               on_problem: ProblemHandler = raise_problem) -> list[Example]:
    """Captioned images from a JSONL or CSV file, one example per image (rows naming the same file, one per
    caption, are grouped): rows without an image or a caption and images that do not open are reported and
    left out (``strict``: a bad image stops everything)."""
    examples = read_examples(path, image_column=image_column, text_columns=tuple(caption_columns),
                             on_problem=on_problem)
    pairs = group_by_image(usable_pairs(examples, what, on_problem))
    checked = check_images(pairs, strict=strict, on_problem=on_problem)
    return require_examples(checked, what, need_image=True, need_text=True)
