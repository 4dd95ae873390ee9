"""search: text or image queries against an index."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Iterator, Optional

import typer

from mmtools.cli.common import DeviceOption, OutputOption, RuntimeChoice, RuntimeOption, command_session
from mmtools.cli.output import (Column, FieldsOption, OutputFormat, OutputFormatOption, Print0Option,
                                emit_records)
from mmtools.errors import UsageError
from mmtools.ranking import MODES


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
    Column("score (sum)", "score", justify="right", style="cyan", optional=True),
    Column("fusion (sum)", "fusion", justify="right", style="cyan", optional=True),
    Column("path", "path", wrap=True),
    Column("moments", lambda r: " → ".join(_clock(step.get("time")) for step in r.get("steps", [])), wrap=True),
]


def _clock(seconds) -> str:
    from mmtools.video.decode import format_clock

    return format_clock(seconds) if isinstance(seconds, (int, float)) else "?"


def _own_score(kind: str):
    """A hit's ``score`` where it is of this kind (similarity or bm25: mmtools.search.score_kind)."""
    def cell(hit: dict):
        from mmtools.search import score_kind

        return hit.get("score") if score_kind(hit) == kind else None
    return cell


# Each column says what it shows: a similarity, a BM25 relevance, or a fusion value (with each channel's own).
HIT_COLUMNS = [
    Column("rank", "rank", justify="right"),
    Column("similarity", _own_score("similarity"), justify="right", style="cyan", optional=True),
    Column("bm25", _own_score("bm25"), justify="right", style="cyan", optional=True),
    Column("fusion", "fusion", justify="right", style="cyan", optional=True),
    Column("path", moment_label, wrap=True),
    Column("tags", "tags", wrap=True, optional=True),
    Column("matched", "matched", optional=True),
    Column("snippet", "snippet", wrap=True, optional=True),
]


# The modes are mmtools.ranking.MODES (the one table of them).
SearchMode = Enum("SearchMode", {mode: mode for mode in MODES}, type=str)


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
        "--min-score", help="Leave out vector hits less similar than this (cosine similarity, in every mode: "
                            "in hybrid mode and across several indexes it applies to each vector ranking "
                            "before fusion; keyword mode has no similarity and refuses it).")] = None,
    index: IndexesOption = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", help="With several --index: comma-separated weights, one per index; with one index in "
                          "hybrid mode: two, for vector and keyword. Fuses weighted min-max-normalised scores "
                          "instead of reciprocal ranks.")] = None,
    mode: Annotated[Optional[SearchMode], typer.Option(
        "--mode", case_sensitive=False,
        help="vector (the model), keyword (the stored texts, BM25; loads no model) or hybrid (both, fused by "
             "reciprocal rank) [default: hybrid when the index holds texts beyond file names, else vector; "
             "an image query is a vector search whatever the mode].")]
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
    folder: Annotated[Optional[str], typer.Option(
        "--folder", metavar="DIR", help="Search the photos below this folder in one step, with no index to "
                                        "build: they are embedded and indexed into the folder's own index "
                                        "(kept in MMTOOLS_CACHE_DIR), brought up to date before each search; "
                                        "photos encoded before are not encoded again. --model picks the "
                                        "model [default: MMTOOLS_MODEL, else the default model].")] = None,
) -> None:
    """Search an index: one JSONL line per hit with query_id, query, rank, score (or fusion) and the stored record.

    Queries are encoded with the model the index was built with. On a terminal the hits are shown as a
    table instead (one per query); pipes and files always get JSONL.

    A query typed without accents ("xe hoi mau do") is searched for as restored ("xe hơi màu đỏ",
    reported as query_restored) by the model; the keyword channel matches with and without accents anyway.

    Scores: score is a hit's cosine similarity (vector) or BM25 relevance (keyword); a hybrid hit, or one
    of several indexes fused, has fusion (what it is ranked by) and scores (each ranking's own) instead.

    Example: mmtools search "xe hơi màu đỏ" -k 5 --montage hits.png

    Example: mmtools search "xe hơi màu đỏ" --folder ~/Pictures
    """
    with command_session("search") as report:
        if folder is not None:
            index, model = [_update_folder(folder, index, model, device, runtime, report)], None
        request, view = request_from_options(
            queries=queries, image=image, k=k, min_score=min_score, index=index, weights=weights, mode=mode,
            where=where, no_restore=no_restore, field=field, lines=lines, model=model, device=device,
            runtime=runtime, output=output, output_format=output_format, print0=print0, montage=montage,
            html=html, group_by=group_by, fields=fields, then=then, within=within, edge=Edge.here())
        from mmtools.serve import client

        # A running `mmtools serve` answers the request itself (the same plan, warm), unless it is drawn here.
        if view.servable and client.search(request, output=output, on_problem=report.problem,
                                           on_warning=report.warning):
            return
        _search_here(request, view, report)


@dataclass
class Edge:
    """What the command sees where it runs: its folder, and whether its input and output are terminals."""

    cwd: str
    stdin_tty: bool
    stdout_tty: bool

    @classmethod
    def here(cls) -> "Edge":
        import os
        import sys

        def tty(stream) -> bool:
            try:
                return stream is None or stream.isatty()
            except (AttributeError, ValueError):
                return False

        return cls(os.getcwd(), tty(sys.stdin), tty(sys.stdout))


@dataclass
class View:
    """How the hits are shown: JSONL (which a server may write), or drawn by this command."""

    output: str | None
    output_format: OutputFormat
    print0: bool = False
    montage: str | None = None
    html: str | None = None
    fields: str | None = None
    device: str = "auto"
    runtime: str = "auto"

    @property
    def servable(self) -> bool:
        """Whether a server may answer: plain JSONL, the default device and runtime (the server runs its own)."""
        return (self.output_format == OutputFormat.jsonl and not self.print0 and not self.montage
                and not self.html and not self.fields and self.device == "auto" and self.runtime == "auto")


def _update_folder(folder: str, index, model, device, runtime, report) -> str:
    """The folder's own index, brought up to date (mmtools.folder_index); its path."""
    from mmtools.folder_index import update_folder_index

    if index:
        raise UsageError("--folder searches the folder's own index: leave out --index",
                         hint="to search an index you built, give --index alone")
    bar = report.progress("indexing the folder")
    try:
        updated = update_folder_index(
            folder, model=model, device=device, runtime=str(_value(runtime)), on_problem=report.problem,
            progress=bar, on_wait=lambda: report.info(f"waiting for another mmtools process indexing {folder}"))
    finally:
        bar.close()
    done = updated.summary
    if done.added or done.replaced or done.removed:
        report.info(f"{folder}: {done.info.count} photos indexed ({done.added} added, {done.replaced} replaced, "
                    f"{done.removed} removed) with {updated.model}")
    return str(updated.path)


def _value(option):
    return getattr(option, "value", option)


def request_from_options(*, queries, image, k, min_score, index, weights, mode, where, no_restore, field, lines,
                         model, device, runtime, output, output_format, print0, montage, html, group_by, fields,
                         then, within, edge: Edge, folder=None):
    """The search request and view of these options, as the command line gave them (here, or in the server
    that parses a forwarded command line with this command's own parser): ``(SearchRequest, View)``.
    ``folder`` is the command's own to bring up to date first (a server given it declines)."""
    from mmtools.search_plan import DEFAULT_INDEX, SearchRequest

    if folder is not None:
        raise UsageError("--folder is indexed by the command itself, before the search is planned")
    queries, image, then, where = list(queries or []), list(image or []), list(then or []), list(where or [])
    inputs = None
    if not queries and not image:
        if then:
            raise UsageError("--then follows one first step: one query text or one --image",
                             hint='mmtools search "người đàn ông mở cửa" --then "chiếc xe chạy đi" --within 30')
        if edge.stdin_tty:
            raise UsageError("no query given", hint='mmtools search "xe hơi màu đỏ", or --image PHOTO.jpg, '
                                                    "or pipe queries in")
        inputs = "lines" if lines else "records"  # records of steps in order are told apart by the plan
    if then and len(queries) + len(image) != 1:
        raise UsageError("--then follows one first step: one query text or one --image",
                         hint='mmtools search "người đàn ông mở cửa" --then "chiếc xe chạy đi" --within 30')
    temporal = bool(then) or inputs == "sequences"
    if temporal and (montage or html or group_by is not None):
        raise UsageError("--montage, --html and --group-by show single queries, not steps in order",
                         hint="leave them out with --then (results are one per video already)")
    indexes = list(index or []) or [DEFAULT_INDEX]
    values = _parse_weights(weights)
    if values is not None and len(indexes) == 1 and (_value(mode) not in (None, "hybrid") or len(values) != 2):
        raise UsageError("with one index, --weights gives two weights (vector,keyword) to a hybrid search",
                         hint="e.g. --mode hybrid --weights 0.3,0.7")
    if values is not None and len(indexes) > 1:
        from mmtools.fusion import check_weights

        check_weights(values, len(indexes))
    if model is not None and len(indexes) > 1:
        raise UsageError("--model applies to a single index, not to a fusion of several",
                         hint="leave it out with several --index (each is queried with its own model)")
    fmt = _value(output_format)
    if fmt == OutputFormat.auto.value:
        fmt = OutputFormat.jsonl.value if output not in (None, "-") or not edge.stdout_tty else OutputFormat.table.value
    request = SearchRequest(indexes=indexes, texts=queries, images=image, then=then, within=float(within),
                            mode=_value(mode), where=where, weights=values, restore=not no_restore,
                            runtime=str(_value(runtime)), device=str(device), model=model, k=k,
                            min_score=min_score, group_by=_value(group_by), field=field, inputs=inputs, cwd=edge.cwd)
    view = View(output, OutputFormat(fmt), print0, montage, html, fields, str(device), str(_value(runtime)))
    return request, view


def none_selected(name: str, conditions: list[str]) -> str:
    """The warning for a --where that no record of an index meets (here and in the server alike)."""
    return f"no record of {name} meets --where {' and '.join(conditions)}"


def where_error(exc: Exception) -> UsageError:
    return UsageError(f"--where {exc}", hint="e.g. --where 'tags=biển' or --where 'year>=2020'")


def _search_here(request, view: View, report) -> None:
    """The request answered in this process (no server, or a view the server does not draw)."""
    from mmtools.index.filters import FilterError
    from mmtools.search_plan import LocalResources, search_hits

    hits = search_hits(request, LocalResources(), _inputs(request, report), on_problem=report.problem,
                       on_none_selected=lambda name, where: report.warning(none_selected(name, where)))
    try:  # the plan is made with the first hit: a bad condition is a usage error before anything is written
        first = next(hits, None)
    except FilterError as exc:
        raise where_error(exc) from None
    hits = iter(()) if first is None else _chain(first, hits)
    temporal = request.temporal or (first is not None and "steps" in first)  # steps in order read from stdin
    if temporal and (view.montage or view.html):
        raise UsageError("--montage and --html show single queries, not steps in order",
                         hint="leave them out when standard input holds steps")
    kept: list[dict] = []
    if view.montage or view.html:
        hits = _keeping(hits, kept)
    if temporal:
        emit_records(hits, view.output_format, columns=SEQUENCE_COLUMNS, output=view.output, group_by="query",
                     fields=view.fields)
        return
    emit_records(hits, view.output_format, columns=HIT_COLUMNS, output=view.output, print0=view.print0,
                 group_by=_query_title, fields=view.fields)
    if view.montage or view.html:
        from mmtools.report import rows_from_records, write_html, write_montage

        rows = rows_from_records(kept)
        if view.montage:
            write_montage(view.montage, rows, on_problem=report.problem)
            report.info(f"{view.montage}: contact sheet of {sum(len(r.hits) for r in rows)} hits")
        if view.html:
            write_html(view.html, rows, on_problem=report.problem)
            report.info(f"{view.html}: page of {sum(len(r.hits) for r in rows)} hits")


def _chain(first: dict, rest: Iterator[dict]) -> Iterator[dict]:
    yield first
    yield from rest


def _inputs(request, report) -> Iterator | None:
    """Standard input's records or lines, when the queries come from it."""
    if request.inputs is None:
        return None
    from mmtools.records import read_records, read_text_lines

    if request.inputs == "lines":
        return (text for _where, text in read_text_lines(["-"], report.problem))
    return read_records(["-"], report.problem)


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
        kept.append({key: hit.get(key) for key in ("query_id", "query", "rank", "score", "fusion", "matched",
                                                   "path", "id", "time", "end", "text")})
        yield hit
