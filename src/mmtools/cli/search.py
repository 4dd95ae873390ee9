"""search: text or image queries against an index."""

from __future__ import annotations

from typing import Annotated, Iterator, Optional

import typer

from mmtools.cli.common import DeviceOption, OutputOption, command_session
from mmtools.cli.output import (Column, OutputFormat, OutputFormatOption, Print0Option, emit_records,
                                path_or_id, resolve_format)
from mmtools.errors import UsageError

# Repeatable, for rank fusion over several indexes (each queried with its own model).
IndexesOption = Annotated[Optional[list[str]], typer.Option(
    "--index", "-i", envvar="MMTOOLS_INDEX", show_envvar=True,
    help="The index: a FAISS index file [default: idx.faiss], milvus://HOST:PORT/COLLECTION or "
         "milvus-lite://PATH.db/COLLECTION. Repeat it to fuse several indexes, each queried with "
         "its own model: reciprocal rank fusion, or --weights.")]

# What a hit shows in a table: tags only where the index stored some.
HIT_COLUMNS = [
    Column("rank", "rank", justify="right"),
    Column("score", "score", justify="right", style="cyan"),
    Column("path", path_or_id, wrap=True),
    Column("tags", "tags", wrap=True, optional=True),
]


def search_command(
    queries: Annotated[Optional[list[str]], typer.Argument(
        help="Text queries. With none (and no --image), queries are read from standard input: JSONL records "
             "with a text field, a 'path' (image) or a ready 'embedding', or plain lines with --lines.")] = None,
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", metavar="PATH", help="An image to search with (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Hits per query.")] = 10,
    min_score: Annotated[Optional[float], typer.Option(
        "--min-score", help="Leave out hits scoring below this (cosine similarity).")] = None,
    index: IndexesOption = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", help="With several --index: comma-separated weights, one per index; fuse weighted "
                          "min-max-normalised scores instead of reciprocal ranks.")] = None,
    field: Annotated[str, typer.Option("--field", "-f", help="Text field of JSONL query records.")] = "text",
    lines: Annotated[bool, typer.Option("--lines", help="Standard input holds one plain-text query per line.")]
        = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="The index's model where it is now (e.g. a directory that moved): used if it is "
                              "the same model (same fingerprint), refused otherwise [default: the index's "
                              "model; MMTOOLS_MODEL is not consulted].")] = None,
    device: DeviceOption = "auto",
    output: OutputOption = None,
    output_format: OutputFormatOption = OutputFormat.auto,
    print0: Print0Option = False,
    montage: Annotated[Optional[str], typer.Option(
        "--montage", metavar="PATH", help="Also draw the hits as a contact sheet (PNG): one row per query, "
                                          "thumbnails in rank order with rank and score. Relative image "
                                          "paths are opened from the current directory.")] = None,
    html: Annotated[Optional[str], typer.Option(
        "--html", metavar="PATH", help="Also write an HTML page of the hits, images linked by path "
                                       "(relative to the page where possible).")] = None,
) -> None:
    """Search an index: one JSONL line per hit with query_id, query, rank, score and the stored record.

    Queries are encoded with the model the index was built with. On a terminal the hits are shown as a
    table instead (one per query); pipes and files always get JSONL.

    Example: mmtools search "xe hơi màu đỏ" -k 5 --montage hits.png
    """
    with command_session("search") as report:
        from mmtools.serve import client

        # A running `mmtools serve` answers plain JSONL searches of one index, warm.
        plain = (len(index or []) <= 1 and not weights and not montage and not html
                 and resolve_format(output_format, output) == OutputFormat.jsonl)
        if plain and device == "auto" and client.search(
                texts=queries or [], images=image or [], k=k, min_score=min_score,
                index=(index or [None])[0], field=field, lines=lines, model=model, output=output,
                on_problem=report.problem):
            return
        from mmtools.index.backends import open_reader
        from mmtools.models import load_encoder
        from mmtools.search import query_encoder, search

        indexes = index or ["idx.faiss"]
        if len(indexes) > 1 or weights:
            if min_score is not None or model is not None:
                raise UsageError("--min-score and --model apply to a single index, not to a fusion",
                                 hint="leave them out with several --index")
            _fused(indexes, weights, _queries(queries or [], image or [], field, lines, report), k, device,
                   report, output=output, output_format=output_format, print0=print0)
            return
        index = indexes[0]
        with open_reader(index) as reader:
            get_encoder = query_encoder(reader.info, index, lambda name: load_encoder(name, device), model)
            if model is not None:
                get_encoder()  # check the model named now, before any query
            hits = search(reader, _queries(queries or [], image or [], field, lines, report), get_encoder, k=k,
                          min_score=min_score, on_problem=report.problem)
            kept: list[dict] = []
            if montage or html:
                hits = _keeping(hits, kept)
            emit_records(hits, output_format, columns=HIT_COLUMNS, output=output, print0=print0,
                         group_by="query")
        if montage or html:
            from mmtools.report import rows_from_records, write_html, write_montage

            rows = rows_from_records(kept)
            if montage:
                write_montage(montage, rows, on_problem=report.problem)
                report.info(f"{montage}: contact sheet of {sum(len(r.hits) for r in rows)} hits")
            if html:
                write_html(html, rows)
                report.info(f"{html}: page of {sum(len(r.hits) for r in rows)} hits")


def _keeping(hits: Iterator[dict], kept: list[dict]) -> Iterator[dict]:
    """Pass hits through, keeping the few fields the pictures need."""
    for hit in hits:
        kept.append({key: hit.get(key) for key in ("query_id", "query", "rank", "score", "path", "id")})
        yield hit


def _queries(texts: list[str], images: list[str], field: str, lines: bool, report) -> Iterator:
    import sys

    from mmtools.records import read_records, read_text_lines
    from mmtools.search import Query, queries_from_records

    if not texts and not images:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no query given", hint='mmtools search "xe hơi màu đỏ", or --image PHOTO.jpg, '
                                                    "or pipe queries in")
        if lines:
            for number, (_where, text) in enumerate(read_text_lines(["-"], report.problem), 1):
                yield Query(f"q{number}", text=text)
        else:
            yield from queries_from_records(read_records(["-"], report.problem), field, report.problem)
        return
    for number, text in enumerate(texts, 1):
        yield Query(f"q{number}", text=text)
    for path in images:
        yield Query(path, image=path)


def _fused(indexes: list[str], weights: str | None, queries: Iterator, k: int, device: str, report, *,
           output: str | None, output_format: OutputFormat, print0: bool) -> None:
    from contextlib import ExitStack

    from mmtools.fusion import check_weights, fused_search
    from mmtools.index.backends import open_reader
    from mmtools.models import load_encoder

    values = None
    if weights:
        try:
            values = [float(part) for part in weights.split(",")]
        except ValueError:
            raise UsageError(f"--weights {weights!r} is not a comma-separated list of numbers") from None
    check_weights(values, len(indexes))
    with ExitStack() as stack:
        readers = [stack.enter_context(open_reader(path)) for path in indexes]
        encoders = [(lambda name=reader.info.model: load_encoder(name, device)) for reader in readers]
        hits = fused_search(readers, indexes, queries, encoders, k=k, weights=values, on_problem=report.problem)
        emit_records(hits, output_format, columns=HIT_COLUMNS, output=output, print0=print0, group_by="query")
