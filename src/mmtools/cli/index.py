"""index: embedding records in, a FAISS index and its metadata out."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from mmtools.cli.common import command_session, require_input
from mmtools.errors import UsageError
from mmtools.index.kinds import ALL_PARAMS, KINDS

PARAM_HELP = ("Index parameter KEY=VALUE, repeatable: hnsw: m, ef_construction, ef_search; "
              "ivf: nlist, nprobe, rerank.")


def index_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="JSONL files of embedding records; - or nothing reads standard input.")] = None,
    output: Annotated[str, typer.Option(
        "--output", "-o", envvar="MMTOOLS_INDEX", show_envvar=True,
        help="The index file; its metadata goes beside it as FILE.meta.sqlite.")] = "idx.faiss",
    kind: Annotated[Optional[str], typer.Option(
        "--kind", help="flat (exact), hnsw (graph), or ivf (inverted lists with exact re-ranking) "
                       "[default: the existing index's kind, else flat].")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help=PARAM_HELP)] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Start a new index instead of updating; the old one stays until the new one is "
                          "complete.")] = False,
    remove: Annotated[Optional[list[str]], typer.Option(
        "--remove", help="Remove the record with this id (repeatable).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Model of records that carry no embedding_model field; a new index takes it.")]
        = None,
    info: Annotated[bool, typer.Option(
        "--info", help="Print the index's metadata as JSON and exit.")] = False,
) -> None:
    """Build or update a FAISS index from embedding records.

    Records whose id is already in the index replace the old ones. Embeddings from another model, or of
    another dimension, are refused (named on stderr). Files are written to temporary names and renamed
    when complete, so an interrupted run leaves the old index whole.

    Example: mmtools embed-images photos/ | mmtools index -o idx.faiss
    """
    with command_session("index") as report:
        if info:
            _print_info(output)
            return
        from mmtools.index import index_records
        from mmtools.records import read_records

        if kind is not None and kind not in KINDS:
            raise UsageError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        remove_ids = remove or []
        sources = [] if remove_ids and not inputs and sys.stdin.isatty() else require_input(inputs or [], "records")
        bar = report.progress("indexing")
        try:
            summary = index_records(read_records(sources, report.problem), output, model=_model_name(model),
                                    kind=kind, params=_parse_params(param or []), rebuild=rebuild,
                                    remove_ids=remove_ids, on_problem=report.problem, progress=bar)
        finally:
            bar.close()
        i = summary.info
        records = "record" if i.count == 1 else "records"
        report.info(f"{output}: {i.count} {records} ({summary.added} added, {summary.replaced} replaced, "
                    f"{summary.removed} removed, {summary.skipped} skipped); {i.kind}, {i.dim} dimensions, "
                    f"model {i.model}")


def _model_name(model: str | None) -> str | None:
    if model is None:
        return None
    from mmtools.models import resolve_model

    return resolve_model(model).name


def _parse_params(pairs: list[str]) -> dict[str, int]:
    params: dict[str, int] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise UsageError(f"--param {pair!r} is not KEY=NUMBER (a positive whole number)", hint=PARAM_HELP)
        if name not in ALL_PARAMS:
            raise UsageError(f"--param {pair!r}: unknown parameter {name!r}", hint=PARAM_HELP)
        params[name] = int(value)
    return params


def _print_info(path: str) -> None:
    import orjson

    from mmtools.index import IndexReader

    with IndexReader(path) as reader:
        info = dict(reader.info.__dict__, path=path)
    sys.stdout.buffer.write(orjson.dumps(info, option=orjson.OPT_APPEND_NEWLINE))
