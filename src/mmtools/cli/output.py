"""How a command writes its records: JSONL for pipes and files, a compact table for people, or bare paths.

Any command that yields records calls ``emit_records``; the choice between the three is the user's
(``--format``), and by default depends on where standard output goes: a table on a terminal, JSONL anywhere
else (pipes, files, cron), so scripts always see exactly the JSONL they saw before.

    from mmtools.cli.output import Column, OutputFormatOption, Print0Option, emit_records

    emit_records(hits, fmt, columns=[Column("rank", "rank", justify="right"),
                                     Column("score", "score", justify="right"),
                                     Column("path", path_or_id, wrap=True)],
                 output=output, print0=print0, group_by="query")

Tables are drawn with rich (a dependency already), which honours NO_COLOR and measures Vietnamese text in
terminal cells. Only the standard library and typer are imported at module level, so `--help` stays instant.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import Enum
from typing import IO, Annotated, Any, Callable, Iterable, Iterator, Optional, Sequence

import typer

from mmtools.errors import UsageError

Record = dict[str, Any]


class OutputFormat(str, Enum):
    auto = "auto"
    jsonl = "jsonl"
    table = "table"
    paths = "paths"
    csv = "csv"


OutputFormatOption = Annotated[OutputFormat, typer.Option(
    "--format", "-F", case_sensitive=False,
    help="What standard output (or --output) gets: jsonl (one record per line), table (for reading), "
         "paths (one path, or id, per record, for xargs), or csv (the table's columns, or --fields, "
         "comma-separated, no header line). auto: a table on a terminal, JSONL otherwise.")]
FieldsOption = Annotated[Optional[str], typer.Option(
    "--fields", metavar="A,B,...", help="With --format csv: these record fields, in this order (e.g. "
                                        "path,frame for the 'video, frame' lines of a challenge submission).")]
Print0Option = Annotated[bool, typer.Option(
    "--print0", "-0", help="With --format paths: end each path with a NUL byte instead of a newline "
                           "(for xargs -0).")]


@dataclass(frozen=True)
class Column:
    """One table column: a title, and a record field name or a function of the record giving the cell.

    ``wrap``: a long cell folds onto more lines (paths, texts) instead of being cut with an ellipsis.
    ``optional``: the column is left out of a block where no record has a value for it (e.g. tags).
    ``middle``: where the table is too wide for the screen, a long cell loses the middle of its text
    (``google/siglip2-…patch16-384``), keeping the start and the end that tells it from its neighbours.
    ``whole``: the cell is never cut or folded (sizes, numbers); other columns give way.
    ``spare``: left out where the table is too wide for the screen (a location `info` also shows).
    """

    title: str
    value: str | Callable[[Record], Any]
    justify: str = "left"
    wrap: bool = False
    optional: bool = False
    style: str | None = None
    middle: bool = False
    whole: bool = False
    spare: bool = False

    def cell(self, record: Record) -> Any:
        return record.get(self.value) if isinstance(self.value, str) else self.value(record)


def path_or_id(record: Record) -> Any:
    """What `paths` prints and tables show: the record's path, else its id."""
    path = record.get("path")
    return path if isinstance(path, str) and path else record.get("id")


def resolve_format(fmt: OutputFormat, output: str | None, stream: IO | None = None) -> OutputFormat:
    """``auto`` becomes table when the records go to a terminal, else jsonl."""
    if fmt != OutputFormat.auto:
        return fmt
    if output not in (None, "-"):
        return OutputFormat.jsonl
    stream = stream or sys.stdout
    try:
        return OutputFormat.table if stream.isatty() else OutputFormat.jsonl
    except (AttributeError, ValueError):
        return OutputFormat.jsonl


def emit_records(
    records: Iterable[Record],
    fmt: OutputFormat,
    *,
    columns: Sequence[Column],
    output: str | None = None,
    print0: bool = False,
    group_by: str | Callable[[Record], Any] | None = None,
    block_rows: int = 200,
    fields: str | None = None,
) -> int:
    """Write ``records`` to ``output`` (standard output when None or "-") in ``fmt``; return how many.

    jsonl streams record by record (flushed on standard output, so pipes keep moving). table prints one block
    per run of records sharing ``group_by`` (a field name or function; e.g. one block per query), headed by
    that value, at most ``block_rows`` rows per block. paths prints ``path_or_id`` per record.
    """
    fmt = resolve_format(fmt, output)
    if print0 and fmt != OutputFormat.paths:
        raise UsageError("--print0 goes with --format paths", hint="add --format paths")
    if fields is not None and fmt != OutputFormat.csv:
        raise UsageError("--fields goes with --format csv", hint="add --format csv")
    from mmtools.records import RecordWriter, open_output

    with open_output(output) as stream:
        to_stdout = output in (None, "-")
        if fmt == OutputFormat.jsonl:
            return RecordWriter(stream, flush_each=to_stdout).write_all(records)
        if fmt == OutputFormat.paths:
            return _write_paths(records, stream, b"\0" if print0 else b"\n", flush_each=to_stdout)
        if fmt == OutputFormat.csv:
            return _write_csv(records, stream, columns, _field_list(fields), flush_each=to_stdout)
        return _write_tables(records, stream, columns, group_by, block_rows, to_terminal=to_stdout)


def emit_object(obj: Record, fmt: OutputFormat, *, output: str | None = None, title: str | None = None,
                shown: Callable[[str, Any], Any] | None = None) -> None:
    """Write one object (a report, an index's metadata): one line of JSON for pipes and files, and on a
    terminal a two-column table of its fields, nested objects as dotted names (``t2i.R@1``). ``shown`` may
    turn a field's value into what a person reads (a date for a timestamp, a size in MB for bytes)."""
    fmt = resolve_format(fmt, output)
    from mmtools.records import open_output

    with open_output(output) as stream:
        if fmt != OutputFormat.table:
            import orjson

            stream.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))
            return
        rows = [{"field": key, "value": shown(key, value) if shown else value} for key, value in _flatten(obj)
                if value not in (None, "", [], {})]  # an empty field says nothing to a reader
        _write_tables(rows, stream, [Column("field", "field", style="bold"), Column("value", "value", wrap=True)],
                      (lambda _row: title) if title else None, len(rows) or 1, to_terminal=output in (None, "-"))


def _flatten(obj: Record, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def vector_cell(record: Record) -> str:
    """What a table shows for a record's embedding: its size, never its numbers (``768-d``)."""
    vector = record.get("embedding")
    if isinstance(vector, list):
        return f"{len(vector)}-d"
    if isinstance(vector, str) and vector:
        return f"{(len(vector) * 3 // 4 - vector[-2:].count('=')) // 4}-d"  # base64 of float32
    return ""


def _write_paths(records: Iterable[Record], stream: IO[bytes], end: bytes, flush_each: bool) -> int:
    count = 0
    for record in records:
        value = path_or_id(record)
        if value is None:
            continue
        stream.write(str(value).encode("utf-8", "surrogateescape") + end)
        count += 1
        if flush_each:
            stream.flush()
    return count


def _field_list(fields: str | None) -> list[str] | None:
    if fields is None:
        return None
    names = [name.strip() for name in fields.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--fields {fields!r} names no field", hint="e.g. --fields path,frame")
    return names


def _write_csv(records: Iterable[Record], stream: IO[bytes], columns: Sequence[Column],
               fields: list[str] | None, flush_each: bool) -> int:
    """One line per record: the named fields' raw values, or the table's cells; no header line."""
    import csv
    import io

    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    count = 0
    try:
        for record in records:
            if fields is None:
                writer.writerow([format_cell(column.cell(record)) for column in columns])
            else:
                writer.writerow([_csv_value(record.get(name)) for name in fields])
            count += 1
            if flush_each:
                text.flush()
    finally:
        text.detach()
    return count


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _write_tables(records: Iterable[Record], stream: IO[bytes], columns: Sequence[Column],
                  group_by: str | Callable[[Record], Any] | None, block_rows: int, to_terminal: bool) -> int:
    import io

    from rich.console import Console

    text = io.TextIOWrapper(stream, encoding="utf-8", errors="replace", write_through=True)
    interactive = to_terminal and _isatty(sys.stdout)
    styled = interactive and not _no_color()  # NO_COLOR: no escape sequences at all, bold included
    console = Console(file=text, force_terminal=interactive or None, color_system="auto" if styled else None,
                      highlight=False, soft_wrap=False, emoji=False, markup=False,
                      width=None if interactive else _plain_width())
    count = 0
    try:
        for title, block in _blocks(records, group_by, block_rows):
            console.print(_table(title, block, columns, console.width))
            count += len(block)
            text.flush()
    finally:
        text.detach()  # the caller owns the byte stream
    return count


def _blocks(records: Iterable[Record], group_by, limit: int) -> Iterator[tuple[str | None, list[Record]]]:
    key_of = (lambda r: r.get(group_by)) if isinstance(group_by, str) else group_by
    block: list[Record] = []
    current: Any = object()
    for record in records:
        key = key_of(record) if key_of else None
        if block and (key != current or len(block) >= limit):
            yield (None if key_of is None else str(current)), block
            block = []
        current = key
        block.append(record)
    if block:
        yield (None if key_of is None else str(current)), block


def _table(title: str | None, block: list[Record], columns: Sequence[Column], width: int | None = None):
    from rich import box
    from rich.table import Table

    cells = [[column.cell(record) for column in columns] for record in block]
    kept = [i for i, column in enumerate(columns)
            if not column.optional or any(row[i] not in (None, "", [], {}) for row in cells)]
    text = [[format_cell(row[i]) for i in kept] for row in cells]
    shown = [columns[i] for i in kept]
    if width:
        text, shown = _fit(text, shown, width)
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, header_style="bold")
    for column, cells_width, word in zip(shown, _widths(text, shown), _widths(text, shown, words=True)):
        table.add_column(column.title, justify=column.justify, style=column.style,
                         overflow="fold" if column.wrap else "ellipsis", no_wrap=not column.wrap,
                         min_width=cells_width if column.whole else
                         min(word, FOLDED_WIDTH) if column.wrap and width else None)
    for row in text:
        table.add_row(*row)
    return table


COLUMN_GAP = 3  # a cell's padding on each side and the rule between columns
FOLDED_WIDTH = 20  # the most a folding column (a path, a text) keeps for its longest word


def _widths(text: list[list[str]], columns: Sequence[Column], words: bool = False) -> list[int]:
    """Each column's widest cell (or, with ``words``, widest word), in terminal cells."""
    from rich.cells import cell_len

    return [max([cell_len(column.title)] + [cell_len(part) for row in text
                                             for part in (row[i].split() if words else [row[i]])])
            for i, column in enumerate(columns)]


def _needed(text: list[list[str]], columns: Sequence[Column]) -> int:
    """The narrowest the table can be without cutting: folding columns at their longest word (at most
    FOLDED_WIDTH), the others whole."""
    natural, words = _widths(text, columns), _widths(text, columns, words=True)
    return sum(min(w, FOLDED_WIDTH) if c.wrap else n for n, w, c in zip(natural, words, columns)) \
        + COLUMN_GAP * (len(columns) - 1)


def _fit(text: list[list[str]], columns: Sequence[Column],
         width: int) -> tuple[list[list[str]], list[Column]]:
    """Where the table would not fit ``width``: leave out the spare columns, then cut the middle of the
    ``middle`` columns' long cells, as little as makes it fit and never so much that two cells of a column
    read the same."""
    columns = list(columns)
    for i in reversed(range(len(columns))):
        if _needed(text, columns) > width and columns[i].spare:
            del columns[i]
            text = [row[:i] + row[i + 1:] for row in text]
    excess = _needed(text, columns) - width
    middles = [i for i, c in enumerate(columns) if c.middle]
    if excess <= 0 or not middles:
        return text, columns
    natural = _widths(text, columns)
    for i in middles:  # each gives way in proportion to its width
        share = -(-excess * natural[i] // sum(natural[j] for j in middles))
        limit = max(natural[i] - share, len(columns[i].title) + 2, 8)
        values = {row[i] for row in text}
        while limit < natural[i] and len({_cut_middle(v, limit) for v in values}) < len(values):
            limit += 1
        text = [row[:i] + [_cut_middle(row[i], limit)] + row[i + 1:] for row in text]
    return text, columns


def _cut_middle(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def format_cell(value: Any) -> str:
    """A readable cell: scores to 3 decimals, lists joined by commas, {label, score} items as `label 0.91`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_cell(item) for item in value)
    if isinstance(value, dict):
        label = next((value[k] for k in ("label", "tag", "name", "text", "id") if k in value), None)
        score = next((value[k] for k in ("score", "probability", "p") if k in value), None)
        if label is not None:
            return f"{label} {format_cell(score)}" if isinstance(score, (int, float)) else str(label)
        return ", ".join(f"{k}={format_cell(v)}" for k, v in value.items())
    return str(value)


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))  # https://no-color.org: set and non-empty


def _isatty(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _plain_width() -> int:
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 100
