"""search: text or image queries against an index."""

from __future__ import annotations

from typing import Annotated, Iterator, Optional

import typer

from mmtools.cli.common import DeviceOption, IndexOption, OutputOption, command_session
from mmtools.errors import UsageError


def search_command(
    queries: Annotated[Optional[list[str]], typer.Argument(
        help="Text queries. With none (and no --image), queries are read from standard input: JSONL records "
             "with a text field, a 'path' (image) or a ready 'embedding', or plain lines with --lines.")] = None,
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", help="An image to search with (repeatable).")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Hits per query.")] = 10,
    min_score: Annotated[Optional[float], typer.Option(
        "--min-score", help="Leave out hits scoring below this (cosine similarity).")] = None,
    index: IndexOption = "idx.faiss",
    field: Annotated[str, typer.Option("--field", "-f", help="Text field of JSONL query records.")] = "text",
    lines: Annotated[bool, typer.Option("--lines", help="Standard input holds one plain-text query per line.")]
        = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="The index's model where it is now (e.g. a directory that moved): used if it is "
                              "the same model (same fingerprint), refused otherwise [default: the index's "
                              "model; MMTOOLS_MODEL is not consulted].")] = None,
    device: DeviceOption = "auto",
    output: OutputOption = None,
) -> None:
    """Search an index: one JSONL line per hit with query_id, query, rank, score and the stored record.

    Queries are encoded with the model the index was built with.

    Example: mmtools search "xe hơi màu đỏ" -k 5
    """
    with command_session("search") as report:
        from mmtools.index import IndexReader
        from mmtools.models import load_encoder
        from mmtools.records import RecordWriter, open_output
        from mmtools.search import query_encoder, search

        with IndexReader(index) as reader:
            get_encoder = query_encoder(reader.info, index, lambda name: load_encoder(name, device), model)
            if model is not None:
                get_encoder()  # check the model named now, before any query
            with open_output(output) as stream:
                writer = RecordWriter(stream, flush_each=output is None)
                writer.write_all(search(reader, _queries(queries or [], image or [], field, lines, report),
                                        get_encoder, k=k, min_score=min_score, on_problem=report.problem))


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
