"""index: embedding records in, a FAISS index and its metadata out; also export, merge, compact, sync."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from mmtools.cli.common import EmbeddingFormat, FormatOption, command_session, require_input
from mmtools.cli.output import OutputFormat, OutputFormatOption, emit_object
from mmtools.errors import UsageError
from mmtools.index.kinds import ALL_PARAMS, KINDS, param_error

PARAM_HELP = ("Index parameter KEY=VALUE, repeatable: hnsw: m, ef_construction, ef_search; "
              "ivf: nlist, nprobe, rerank; ivfpq: nlist, pq_m, nbits, nprobe, rerank, keep_vectors.")


def index_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="JSONL files of embedding records; - or nothing reads standard input (not read when --merge, "
             "--compact or --remove is given without inputs).")] = None,
    output: Annotated[str, typer.Option(
        "--output", "-o", envvar="MMTOOLS_INDEX", show_envvar=True,
        help="The index file (its metadata goes beside it as FILE.meta.sqlite), or a Milvus collection: "
             "milvus://HOST:PORT/COLLECTION or milvus-lite://PATH.db/COLLECTION.")] = "idx.faiss",
    kind: Annotated[Optional[str], typer.Option(
        "--kind", help="flat (exact), hnsw (graph), ivf (inverted lists with exact re-ranking) or ivfpq "
                       "(compressed codes for collections past memory) [default: the existing index's "
                       "kind, else the first --merge part's, else flat].")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help=PARAM_HELP)] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Start a new index instead of updating; the old one stays until the new one is "
                          "complete.")] = False,
    remove: Annotated[Optional[list[str]], typer.Option(
        "--remove", help="Remove the record with this id (repeatable); a path is also tried as the id "
                         "embed-images gives that file.")] = None,
    remove_from: Annotated[Optional[str], typer.Option(
        "--remove-from", metavar="FILE", help="Remove the ids listed in FILE, one a line (- reads standard "
                                              "input).")] = None,
    sync: Annotated[bool, typer.Option(
        "--sync", help="Make the index equal to the input: after adding it, remove records that were not in "
                       "it and whose file (their 'path') no longer exists.")] = False,
    root: Annotated[Optional[str], typer.Option(
        "--root", help="Folder the records' relative paths and ids are relative to (give embed-images the "
                       "same --root); --sync never looks outside it.")] = None,
    merge: Annotated[Optional[list[str]], typer.Option(
        "--merge", metavar="PART", help="Add every record of this index, vectors and all (repeatable); the "
                                        "parts must hold vectors from the same model.")] = None,
    compact: Annotated[bool, typer.Option(
        "--compact", help="Rebuild without the vectors of removed and replaced records now (this also "
                          "happens on its own once they pass a fifth of the index).")] = False,
    export: Annotated[bool, typer.Option(
        "--export", help="Write the stored records with their vectors as embedding records to standard "
                         "output and exit (to change kind, merge, or evaluate without embedding again).")]
        = False,
    embedding_format: FormatOption = EmbeddingFormat.base64,
    lock_timeout: Annotated[Optional[float], typer.Option(
        "--lock-timeout", metavar="SECONDS", min=0,
        help="Give up when another mmtools process has been writing the index this long [default: wait as "
             "long as it takes].")] = None,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Fail at once when another mmtools process is writing the index.")] = False,
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="Model of records that carry no embedding_model field; a new index takes it.")]
        = None,
    info: Annotated[bool, typer.Option(
        "--info", help="Print the index's metadata and exit: a table on a terminal, one JSON object "
                       "otherwise (or as --format says).")] = False,
    fmt: OutputFormatOption = OutputFormat.auto,
    allow_removal: Annotated[bool, typer.Option(
        "--allow-removal", help="Let --sync remove records even when its folder is missing, empty or not the "
                                "index's root, or when more than half the records would go (refused "
                                "otherwise, listing them).")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Check every segment file against the size and checksum recorded when it was "
                        "written, and exit (non-zero, naming the file, when one is damaged).")] = False,
    text_field: Annotated[Optional[list[str]], typer.Option(
        "--text-field", metavar="FIELD",
        help="Also index this field's text for keyword search (repeatable; remembered by the index). "
             "captions, caption, text, ocr_text, tags and the file name always are.")] = None,
) -> None:
    """Build or update a FAISS index from embedding records.

    Records whose id is already in the index replace the old ones; records that did not change are left
    alone. Embeddings from another model, or of another dimension, are refused (named on stderr). A write
    has one commit point: a run that is interrupted or killed leaves the old index whole, and the next run
    tidies up after it. A second writer waits for the first.

    Example: mmtools embed-images --root photos photos/ | mmtools index -o idx.faiss --sync --root photos
    """
    with command_session("index") as report:
        if info:
            _print_info(output, fmt)
            return
        if export:
            _export(output, embedding_format.value)
            return
        if check:
            _check(output, report)
            return
        from mmtools.index import index_records, merge_parts, part_layout
        from mmtools.records import read_records, read_text_lines

        if kind is not None and kind not in KINDS:
            raise UsageError(f"unknown index kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
        params = _parse_params(param or [])
        unreadable = []  # input lines that were no records: skipped too

        def input_problem(problem) -> None:
            unreadable.append(problem.source)
            report.problem(problem)

        remove_ids = list(remove or [])
        if remove_from is not None:
            remove_ids += [text.strip() for _where, text in read_text_lines([remove_from], report.problem)]
        records_from_stdin = remove_from == "-"
        needs_no_records = bool(merge or compact or remove or remove_from)
        if inputs:
            if records_from_stdin and "-" in inputs:
                raise UsageError("standard input cannot hold both records and --remove-from ids")
            records = read_records(inputs, input_problem)
        elif needs_no_records or records_from_stdin:
            records = iter(())
        else:
            records = read_records(require_input([], "records"), input_problem)
        if merge:
            if kind is None and not rebuild:
                from mmtools.index.backends import index_exists

                if not index_exists(output):
                    kind, part_params = part_layout(merge[0])
                    params = {**part_params, **params}
            records = _chain(merge_parts(merge, into=output), records)
        bar = report.progress("indexing")
        try:
            summary = index_records(
                records, output, model=_model_name(model), kind=kind, params=params, rebuild=rebuild,
                remove_ids=remove_ids, sync=sync, root=root, compact=compact,
                lock_timeout=0 if no_wait else lock_timeout,
                on_wait=lambda: report.info(f"waiting for another mmtools process writing {output} "
                                            "(--no-wait or --lock-timeout to give up)"),
                on_problem=report.problem, progress=bar, text_fields=text_field or (),
                allow_removal=allow_removal)
        finally:
            bar.close()
        for note in summary.notes:
            report.warning(note)
        i = summary.info
        records_word = "record" if i.count == 1 else "records"
        compacted = "; compacted" if summary.compacted else ""
        report.info(f"{output}: {i.count} {records_word} ({summary.added} added, {summary.replaced} replaced, "
                    f"{summary.unchanged} unchanged, {summary.removed} removed, {summary.skipped + len(unreadable)} skipped"
                    f"{compacted}); {i.kind}, {i.dim} dimensions, model {i.model}")


def _chain(*iterables):
    for iterable in iterables:
        yield from iterable


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
        if not sep or not value.strip().isdigit():
            raise UsageError(f"--param {pair!r} is not KEY=NUMBER (a whole number)", hint=PARAM_HELP)
        if name not in ALL_PARAMS:
            raise UsageError(f"--param {pair!r}: unknown parameter {name!r}", hint=PARAM_HELP)
        if (reason := param_error(name, int(value))) is not None:
            raise UsageError(f"--param {pair!r}: {reason}", hint=PARAM_HELP)
        params[name] = int(value)
    return params


def _print_info(path: str, fmt: OutputFormat) -> None:
    from mmtools.index.backends import open_reader

    with open_reader(path) as reader:
        info = dict(reader.info.__dict__, path=path)
    emit_object(info, fmt, title=path, shown=_shown_info)


def _shown_info(field: str, value):
    """An --info value as a person reads it: dates for timestamps, sizes in MB."""
    if field.endswith("_at") and isinstance(value, (int, float)) and value:
        import datetime

        return datetime.datetime.fromtimestamp(value).astimezone().isoformat(timespec="seconds")
    if field.endswith("_bytes") and isinstance(value, int):
        return f"{value:,} ({value / 1e6:.1f} MB)"
    return value


def _check(path: str, report) -> None:
    from mmtools.index.backends import open_reader

    with open_reader(path) as reader:
        if not hasattr(reader, "check"):
            report.info(f"{path}: a Milvus collection, whose segments Milvus checks itself")
            return
        checked = reader.check()
    report.info(f"{path}: {len(checked)} files match their checksums")


def _export(path: str, vector_format: str) -> None:
    from mmtools.index.backends import open_reader
    from mmtools.records import RecordWriter

    with open_reader(path) as reader:
        RecordWriter(sys.stdout.buffer).write_all(reader.export(vector_format))
