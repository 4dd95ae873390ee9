"""search: text or image queries against an index."""

from __future__ import annotations

from typing import Annotated, Iterator, Optional

import typer

from mmtools.cli.common import DeviceOption, IndexOption, OutputOption, command_session
from mmtools.errors import IndexFileError, UsageError


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
        "--model", "-m", help="Check that the index was built with this model (queries always use the "
                              "index's own model; MMTOOLS_MODEL is not consulted).")] = None,
    device: DeviceOption = "auto",
    output: OutputOption = None,
) -> None:
    """Search an index: one JSONL line per hit with query_id, query, rank, score and the stored record.

    Queries are encoded with the model the index was built with.

    Example: mmtools search "xe hơi màu đỏ" -k 5
    """
    with command_session("search") as report:
        from mmtools.serve import client

        if device == "auto" and client.search(texts=queries or [], images=image or [], k=k, min_score=min_score,
                                              index=index, field=field, lines=lines, model=model, output=output,
                                              on_problem=report.problem):
            return  # a running `mmtools serve` did it, warm
        from mmtools.index import IndexReader
        from mmtools.models import load_encoder, resolve_model
        from mmtools.records import RecordWriter, open_output
        from mmtools.search import search

        with IndexReader(index) as reader:
            model_name = reader.info.model
            if model is not None and resolve_model(model).name != model_name:
                raise IndexFileError(
                    f"index {index} was built with model {model_name}; the query model is "
                    f"{resolve_model(model).name}",
                    hint="leave out --model to use the index's model, or rebuild the index with the new model")
            with open_output(output) as stream:
                writer = RecordWriter(stream, flush_each=output is None)
                writer.write_all(search(reader, _queries(queries or [], image or [], field, lines, report),
                                        lambda: load_encoder(model_name, device), k=k, min_score=min_score,
                                        on_problem=report.problem))


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
