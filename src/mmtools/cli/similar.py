"""similar: more like this. Records an index holds, by id, as queries against it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import IndexOption, OutputOption, command_session
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, Print0Option, emit_records, path_or_id


def similar_command(
    ids: Annotated[Optional[list[str]], typer.Argument(
        metavar="ID...", help="Ids of records in the index (as `search` shows them; a photo's path works "
                              "where it is its id); - reads ids from standard input, one a line.")] = None,
    index: IndexOption = "idx.faiss",
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Hits per id, the record itself left out.")] = 10,
    min_score: Annotated[Optional[float], typer.Option(
        "--min-score", help="Leave out hits scoring below this (cosine similarity).")] = None,
    fmt: OutputFormatOption = OutputFormat.auto,
    print0: Print0Option = False,
    output: OutputOption = None,
) -> None:
    """More like this: the records of an index most like one it holds, found with that record's stored vector
    (or, where the index keeps none, its picture encoded by the index's model); one hit per line, as search
    writes them, the record itself left out.

    Example: mmtools similar photos/beach.jpg -i idx.faiss -k 5 --format paths
    """
    with command_session("similar") as report:
        from mmtools.errors import UsageError
        from mmtools.index.backends import open_reader
        from mmtools.models import load_encoder
        from mmtools.search import query_encoder, search
        from mmtools.similar import like_queries, without_themselves

        import sys

        wanted = list(ids or [])
        if wanted == ["-"] or (not wanted and sys.stdin is not None and not sys.stdin.isatty()):
            wanted = [line.strip() for line in sys.stdin if line.strip()]
        if not wanted:
            raise UsageError("no id given", hint="e.g. mmtools similar photos/beach.jpg -i idx.faiss")
        with open_reader(index) as reader:
            hits = search(reader, like_queries(reader, wanted, report.problem),
                          query_encoder(reader.info, index, load_encoder), k=k + 1, min_score=min_score,
                          on_problem=report.problem, mode="vector")
            emit_records(without_themselves(hits, k), fmt, output=output, print0=print0, group_by="query",
                         columns=[Column("rank", "rank", justify="right"),
                                  Column("score", "score", justify="right", style="cyan"),
                                  Column("path", path_or_id, wrap=True),
                                  Column("tags", "tags", wrap=True, optional=True)])
