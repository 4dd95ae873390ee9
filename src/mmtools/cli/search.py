"""search: text or image queries against an index."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Iterator, Optional

import typer

from mmtools.cli.common import DeviceOption, OutputOption, RuntimeChoice, RuntimeOption, command_session
from mmtools.cli.output import (Column, FieldsOption, OutputFormat, OutputFormatOption, Print0Option,
                                emit_records, path_or_id, resolve_format)
from mmtools.errors import UsageError


def moment_label(record: dict):
    """The path, or ``video.mp4 01:23`` for a frame of a video (mmtools.video.moments, imported when drawn)."""
    from mmtools.video.moments import moment_label as label

    return label(record)


# Repeatable, for rank fusion over several indexes (each queried with its own model).
IndexesOption = Annotated[Optional[list[str]], typer.Option(
    "--index", "-i", envvar="MMTOOLS_INDEX", show_envvar=True,
    help="The index: a FAISS index file [default: idx.faiss], milvus://HOST:PORT/COLLECTION or "
         "milvus-lite://PATH.db/COLLECTION. Repeat it to fuse several indexes, each queried with "
         "its own model: reciprocal rank fusion, or --weights.")]

# What a hit shows in a table: tags only where the index stored some.
class GroupBy(str, Enum):
    video = "video"


# A temporal result: the video, and the moment of each step in order.
SEQUENCE_COLUMNS = [
    Column("rank", "rank", justify="right"),
    Column("score", "score", justify="right", style="cyan"),
    Column("path", "path", wrap=True),
    Column("moments", lambda r: " → ".join(_clock(step.get("time")) for step in r.get("steps", [])), wrap=True),
]


def _clock(seconds) -> str:
    from mmtools.video.decode import format_clock

    return format_clock(seconds) if isinstance(seconds, (int, float)) else "?"


HIT_COLUMNS = [
    Column("rank", "rank", justify="right"),
    Column("score", "score", justify="right", style="cyan"),
    Column("path", moment_label, wrap=True),
    Column("tags", "tags", wrap=True, optional=True),
    Column("matched", "matched", optional=True),
    Column("snippet", "snippet", wrap=True, optional=True),
]


class SearchMode(str, Enum):
    vector = "vector"
    keyword = "keyword"
    hybrid = "hybrid"


def _query_title(hit: dict) -> str:
    """A table block's title: the query, and the accents search put back into it."""
    restored = hit.get("query_restored")
    return f"{hit.get('query')} → {restored}" if restored and restored != hit.get("query") else hit.get("query")


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
        "--weights", help="With several --index: comma-separated weights, one per index; with one index in "
                          "hybrid mode: two, for vector and keyword. Fuses weighted min-max-normalised scores "
                          "instead of reciprocal ranks.")] = None,
    mode: Annotated[Optional[SearchMode], typer.Option(
        "--mode", case_sensitive=False,
        help="vector (the model), keyword (the stored texts, BM25; loads no model) or hybrid (both, fused by "
             "reciprocal rank) [default: hybrid when the index holds texts beyond file names, else vector].")]
        = None,
    where: Annotated[Optional[list[str]], typer.Option(
        "--where", metavar="FIELD OP VALUE",
        help="Only records whose stored field meets this, repeatable (all must hold): OP is = != < <= > >= "
             "(numbers, ISO dates) or ~ (contains); a list field matches when any element does. "
             "E.g. --where 'tags=biển' --where 'taken_at>=2024-01-01'.")] = None,
    no_restore: Annotated[bool, typer.Option(
        "--no-restore", help="Encode a query typed without accents as it is, instead of putting the accents "
                             "back first (query_restored in the hits).")] = False,
    field: Annotated[str, typer.Option("--field", "-f", help="Text field of JSONL query records.")] = "text",
    lines: Annotated[bool, typer.Option("--lines", help="Standard input holds one plain-text query per line.")]
        = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="The index's model where it is now (e.g. a directory that moved): used if it is "
                              "the same model (same fingerprint), refused otherwise [default: the index's "
                              "model; MMTOOLS_MODEL is not consulted].")] = None,
    device: DeviceOption = "auto",
    runtime: RuntimeOption = RuntimeChoice.auto,
    output: OutputOption = None,
    output_format: OutputFormatOption = OutputFormat.auto,
    print0: Print0Option = False,
    montage: Annotated[Optional[str], typer.Option(
        "--montage", metavar="PATH", help="Also draw the hits as a contact sheet (PNG): one row per query, "
                                          "thumbnails in rank order with rank and score. Relative image "
                                          "paths are opened from the current directory.")] = None,
    html: Annotated[Optional[str], typer.Option(
        "--html", metavar="PATH", help="Also write an HTML page of the hits, images linked by path "
                                       "(relative to the page where possible); a video frame is a player "
                                       "that starts at its moment (video.mp4#t=83.2).")] = None,
    group_by: Annotated[Optional[GroupBy], typer.Option(
        "--group-by", case_sensitive=False, help="video: keep only each video's best moment (images count "
                                                 "as their own group); -k counts videos then.")] = None,
    fields: FieldsOption = None,
    then: Annotated[Optional[list[str]], typer.Option(
        "--then", metavar="TEXT", help="Events in order: a next step that happens after the query (repeatable). "
                                       "Results are videos, with one moment per step, the steps in time "
                                       "order within --within seconds, ranked by the sum of the steps' "
                                       "scores. Standard input may hold such queries as JSONL: "
                                       '{"steps": [{"text": ...}, {"image": PATH}], "within": 30}.')] = None,
    within: Annotated[float, typer.Option(
        "--within", metavar="SECONDS", min=0.001, help="With --then: first to last step inside this many "
                                                       "seconds (the default of stdin records too).")] = 30.0,
) -> None:
    """Search an index: one JSONL line per hit with query_id, query, rank, score and the stored record.

    Queries are encoded with the model the index was built with. On a terminal the hits are shown as a
    table instead (one per query); pipes and files always get JSONL.

    A query typed without accents ("xe hoi mau do") is searched for as restored ("xe hơi màu đỏ",
    reported as query_restored) by the model; the keyword channel matches with and without accents anyway.

    Example: mmtools search "xe hơi màu đỏ" -k 5 --montage hits.png
    """
    with command_session("search") as report:
        from mmtools.serve import client

        # A running `mmtools serve` answers plain JSONL searches of one index, warm, in any mode, with
        # filters and restored accents; fusions, weights, pictures and steps in order are answered here.
        sequences = _sequences(queries or [], image or [], then or [], within, lines, report)
        if sequences is not None and (montage or html or group_by is not None):
            raise UsageError("--montage, --html and --group-by show single queries, not steps in order",
                             hint="leave them out with --then (results are one per video already)")
        plain = (len(index or []) <= 1 and not weights and not montage and not html and group_by is None
                 and sequences is None and resolve_format(output_format, output) == OutputFormat.jsonl)
        if plain and device == "auto" and runtime == RuntimeChoice.auto and client.search(
                texts=queries or [], images=image or [], k=k, min_score=min_score,
                index=(index or [None])[0], field=field, lines=lines, model=model, output=output,
                on_problem=report.problem, mode=mode.value if mode is not None else None, where=where or [],
                no_restore=no_restore, on_warning=report.warning):
            return
        from mmtools.index.backends import open_reader
        from mmtools.models import load_encoder
        from mmtools.search import query_encoder, search

        indexes = index or ["idx.faiss"]
        if sequences is not None:
            _temporal(indexes, weights, sequences, k, min_score, model, device, report, output=output,
                      output_format=output_format, fields=fields)
            return
        if len(indexes) > 1:
            if min_score is not None or model is not None or mode not in (None, SearchMode.vector) or where:
                raise UsageError("--min-score, --model, --mode and --where apply to a single index, not to a "
                                 "fusion of several", hint="leave them out with several --index")
            _fused(indexes, weights, _queries(queries or [], image or [], field, lines, report), k, device,
                   runtime.value, report, output=output, output_format=output_format, print0=print0,
                   group_by=group_by, fields=fields)
            return
        from mmtools.index.filters import FilterError
        from mmtools.ranking import plan

        index = indexes[0]
        with open_reader(index) as reader:
            try:
                chosen, among = plan(reader, mode.value if mode is not None else None, where or [])
            except FilterError as exc:
                raise UsageError(f"--where {exc}", hint="e.g. --where 'tags=biển' or --where 'year>=2020'") \
                    from None
            values = _parse_weights(weights)
            if values is not None and (chosen != "hybrid" or len(values) != 2):
                raise UsageError("with one index, --weights gives two weights (vector,keyword) to a hybrid search",
                                 hint="e.g. --mode hybrid --weights 0.3,0.7")
            get_encoder = query_encoder(reader.info, index, lambda name: load_encoder(name, device, runtime.value),
                                        model)
            if model is not None and chosen != "keyword":
                get_encoder()  # check the model named now, before any query
            if among is not None and not among:
                report.warning(f"no record of {index} meets --where {' and '.join(where or [])}")
            restore = None if no_restore else _restorer(index)
            hits = search(reader, _queries(queries or [], image or [], field, lines, report), get_encoder,
                          k=_fetch(k, group_by),
                          min_score=min_score, on_problem=report.problem, mode=chosen, among=among,
                          weights=values, restore=restore)
            hits = _grouped(hits, k, group_by)
            kept: list[dict] = []
            if montage or html:
                hits = _keeping(hits, kept)
            emit_records(hits, output_format, columns=HIT_COLUMNS, output=output, print0=print0,
                         group_by=_query_title, fields=fields)
        if montage or html:
            from mmtools.report import rows_from_records, write_html, write_montage

            rows = rows_from_records(kept)
            if montage:
                write_montage(montage, rows, on_problem=report.problem)
                report.info(f"{montage}: contact sheet of {sum(len(r.hits) for r in rows)} hits")
            if html:
                write_html(html, rows, on_problem=report.problem)
                report.info(f"{html}: page of {sum(len(r.hits) for r in rows)} hits")


def _fetch(k: int, group_by: GroupBy | None) -> int:
    """Hits to ask the index for: more when each video keeps only its best moment."""
    return k if group_by is None else max(20 * k, 200)


def _grouped(hits: Iterator[dict], k: int, group_by: GroupBy | None) -> Iterator[dict]:
    if group_by is None:
        return hits
    from mmtools.video.moments import best_moment_per_video

    return best_moment_per_video(hits, k)


def _restorer(index: str):
    """Puts accents back into a query, with a model of the index's own texts, built on first need."""
    def restore(text: str) -> str:
        from mmtools.text.restore import load_restorer

        return load_restorer(index).restore(text)
    return restore


def _parse_weights(weights: str | None) -> list[float] | None:
    if not weights:
        return None
    try:
        return [float(part) for part in weights.split(",")]
    except ValueError:
        raise UsageError(f"--weights {weights!r} is not a comma-separated list of numbers") from None


def _keeping(hits: Iterator[dict], kept: list[dict]) -> Iterator[dict]:
    """Pass hits through, keeping the few fields the pictures need."""
    for hit in hits:
        kept.append({key: hit.get(key) for key in ("query_id", "query", "rank", "score", "path", "id", "time")})
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


def _fused(indexes: list[str], weights: str | None, queries: Iterator, k: int, device: str, runtime: str,
           report, *, output: str | None, output_format: OutputFormat, print0: bool,
           group_by: GroupBy | None = None, fields: str | None = None) -> None:
    from contextlib import ExitStack

    from mmtools.fusion import fused_search
    from mmtools.index.backends import open_reader
    from mmtools.models import load_encoder

    values = _weights(weights, len(indexes))
    with ExitStack() as stack:
        readers = [stack.enter_context(open_reader(path)) for path in indexes]
        encoders = [(lambda name=reader.info.model, info=reader.info: load_encoder(name, device, runtime)
                     .for_index(info)) for reader in readers]
        hits = fused_search(readers, indexes, queries, encoders, k=_fetch(k, group_by), weights=values,
                            on_problem=report.problem)
        emit_records(_grouped(hits, k, group_by), output_format, columns=HIT_COLUMNS, output=output,
                     print0=print0, group_by="query", fields=fields)


def _sequences(texts: list[str], images: list[str], then: list[str], within: float, lines: bool, report):
    """The temporal queries of this command line (or of standard input), or None for ordinary queries."""
    from mmtools.cli.fast import stdin_holds_sequences

    if not then:
        if texts or images or lines or not stdin_holds_sequences():
            return None
        from mmtools.records import read_records
        from mmtools.video.temporal import temporal_queries_from_records

        return temporal_queries_from_records(read_records(["-"], report.problem), within, report.problem)
    if len(texts) + len(images) != 1:
        raise UsageError("--then follows one first step: one query text or one --image",
                         hint='mmtools search "người đàn ông mở cửa" --then "chiếc xe chạy đi" --within 30')
    from mmtools.search import Query
    from mmtools.video.temporal import TemporalQuery

    first = Query("q1/1", text=texts[0]) if texts else Query("q1/1", image=images[0])
    steps = [first] + [Query(f"q1/{i}", text=text) for i, text in enumerate(then, 2)]
    return iter([TemporalQuery("q1", steps, within)])


def _temporal(indexes: list[str], weights: str | None, sequences, k: int, min_score: float | None,
              model: str | None, device: str, report, *, output: str | None, output_format: OutputFormat,
              fields: str | None) -> None:
    """Steps in order: each step searched (one index, or the fusion of several), chained per video."""
    from contextlib import ExitStack

    from mmtools.fusion import fused_search
    from mmtools.index.backends import open_reader
    from mmtools.models import load_encoder
    from mmtools.search import query_encoder, search
    from mmtools.video.temporal import temporal_search

    values = _weights(weights, len(indexes))
    with ExitStack() as stack:
        readers = [stack.enter_context(open_reader(path)) for path in indexes]
        if len(readers) == 1 and values is None:
            get_encoder = query_encoder(readers[0].info, indexes[0], lambda name: load_encoder(name, device), model)

            def retrieve(steps, fetch):
                return search(readers[0], steps, get_encoder, k=fetch, min_score=min_score,
                              on_problem=report.problem)
        else:
            if min_score is not None or model is not None:
                raise UsageError("--min-score and --model apply to a single index, not to a fusion",
                                 hint="leave them out with several --index")
            encoders = [(lambda name=reader.info.model: load_encoder(name, device)) for reader in readers]

            def retrieve(steps, fetch):
                return fused_search(readers, indexes, steps, encoders, k=fetch, weights=values,
                                    on_problem=report.problem)
        emit_records(temporal_search(sequences, retrieve, k=k), output_format, columns=SEQUENCE_COLUMNS,
                     output=output, group_by="query", fields=fields)


def _weights(weights: str | None, members: int) -> list[float] | None:
    from mmtools.fusion import check_weights

    values = _parse_weights(weights)
    if values is not None:
        check_weights(values, members)
    return values
