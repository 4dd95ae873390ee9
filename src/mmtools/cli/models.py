"""models: what is cached or imported, download ahead, import local directories, describe, remove."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Iterable

import typer

from mmtools.cli.common import command_session
from mmtools.cli.output import Column, OutputFormat, emit_records

models_app = typer.Typer(
    name="models", no_args_is_help=True, rich_markup_mode=None,
    help="Manage models: list what is on this machine, download ahead (pull), give a local directory a short "
         "name (import), describe one (info), export one to ONNX (export), remove one. Tables on a terminal, JSONL with --json or in a pipe.",
    context_settings={"help_option_names": ["-h", "--help"]})

JsonOption = Annotated[bool, typer.Option("--json", help="Write JSONL (one record per model) even on a terminal.")]
NameArgument = Annotated[str, typer.Argument(
    help="An imported name, an alias (siglip2-base...), a Hugging Face id (org/name) or a model directory.")]


def _size(record: dict[str, Any]) -> str:
    from mmtools.models.manage import human_size

    return human_size(record.get("size_bytes"))


LIST_COLUMNS = [Column("name", "name", middle=True), Column("source", "source", whole=True),
                Column("family", "family", optional=True, whole=True, spare=True),
                Column("dim", "dim", justify="right", whole=True, spare=True),
                Column("size", _size, justify="right", whole=True),
                Column("aliases", "aliases", optional=True, wrap=True),
                Column("location", "location", wrap=True, optional=True, spare=True)]
FIELD_COLUMNS = [Column("field", "field", style="bold"), Column("value", "value", wrap=True)]


def _emit(records: Iterable[dict[str, Any]], json: bool, columns: list[Column]) -> None:
    emit_records(records, OutputFormat.jsonl if json else OutputFormat.auto, columns=columns)


def _emit_one(record: dict[str, Any], json: bool) -> None:
    """One record: JSONL, or on a terminal a two-column field/value table."""
    from mmtools.cli.output import format_cell, resolve_format

    if json or resolve_format(OutputFormat.auto, None) != OutputFormat.table:
        _emit([record], True, FIELD_COLUMNS)
        return
    rows = []
    for key, value in record.items():
        if key == "size_bytes":
            key, value = "size", _size(record)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={format_cell(v)}" for k, v in value.items() if v not in (None, "", {}, []))
        rows.append({"field": key, "value": value})
    _emit(rows, False, FIELD_COLUMNS)


@models_app.command("list")
def list_command(
    all_: Annotated[bool, typer.Option("--all", "-a", help="Also list the aliases not downloaded yet.")] = False,
    json: JsonOption = False,
) -> None:
    """List the models on this machine: imported names and hub models in the Hugging Face cache, with their
    family, vector dimension, size on disk and location.

    Example: mmtools models list --all
    """
    with command_session("models list"):
        from mmtools.models.manage import list_models

        _emit(list_models(include_aliases=all_), json, LIST_COLUMNS)


@models_app.command("pull")
def pull_command(name: NameArgument, json: JsonOption = False) -> None:
    """Download a hub model into the Hugging Face cache now (safetensors weights, configs and tokenizer only),
    for a machine that will be offline later; copy the cache (HF_HOME) to such a machine.

    Example: mmtools models pull siglip2-base
    """
    with command_session("models pull") as report:
        from mmtools.models.manage import human_size, pull_model

        record = pull_model(name, progress=sys.stderr.isatty() and not _quiet())
        report.info(f"{record['name']}: {human_size(record['size_bytes'])} in {record['location']}")
        _emit_one(record, json)


@models_app.command("import")
def import_command(
    directory: Annotated[str, typer.Argument(metavar="DIR", help="A model directory (save_pretrained output, or "
                                                                 "an mmtools train output).")],
    name: Annotated[str, typer.Option("--name", "-n", help="The short name every --model will accept.")],
    replace: Annotated[bool, typer.Option("--replace", help="Point an existing name at this directory.")] = False,
    json: JsonOption = False,
) -> None:
    """Give a local model directory a short name that every --model (and MMTOOLS_MODEL) accepts.

    The directory is checked (a dual encoder with safetensors weights) and registered, not copied: indexes
    record its full path, so the name and the path are the same model.

    Example: mmtools models import ./runs/photos-v2 --name photos-v2
    """
    with command_session("models import") as report:
        from mmtools.models.manage import import_model

        record = import_model(directory, name, replace=replace)
        report.info(f"{name}: {record['location']} ({record['family']}, {record['dim']} dimensions)")
        if json:
            _emit_one(record, json)


@models_app.command("info")
def info_command(name: NameArgument, json: JsonOption = False) -> None:
    """Describe a model without loading its weights: family, vector dimension, text rules, fingerprint,
    licence where known, size, location, and its ONNX export (towers, and their agreement with PyTorch and,
    for the int8 query tower, with fp32 on each index searched).

    Example: mmtools models info siglip2-base
    """
    with command_session("models info"):
        from mmtools.models.manage import model_info

        _emit_one(model_info(name), json)


@models_app.command("export")
def export_command(
    name: NameArgument,
    int8: Annotated[bool, typer.Option("--int8", help="Add the int8 image tower to an export made before "
                                                      "every export had it (embed-images --int8).")] = False,
    json: JsonOption = False,
) -> None:
    """Export a model to ONNX now, as its first use on a CPU would: the text and image towers in fp32, each
    checked against PyTorch on probe inputs (cosine at least 0.9999, else refused and PyTorch is used), the
    int8 text tower for queries and the int8 image tower for embedding (each used where it agrees with fp32).
    Cached in MMTOOLS_CACHE_DIR by the model's fingerprint (about 1.25x the model's weights); `mmtools models
    info` shows where, its size and the agreement measured.

    Example: mmtools models export siglip2-base --int8
    """
    with command_session("models export") as report:
        from mmtools.models.manage import export_onnx

        record = export_onnx(name, int8=int8)
        report.info(f"{record['model']}: {record['towers']} in {record['directory']}")
        _emit_one(record, json)


@models_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(help="An imported name, or a hub model (alias or id) in the cache.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete a hub model's files from the Hugging "
                                                          "Face cache.")] = False,
    json: JsonOption = False,
) -> None:
    """Forget an imported name (its directory is left in place), or delete a downloaded hub model from the
    Hugging Face cache (only with --yes).

    Example: mmtools models remove photos-v2
    """
    with command_session("models remove") as report:
        from mmtools.models.manage import human_size, remove_model

        record = remove_model(name, delete_cached=yes)
        if record["removed"] == "imported name":
            report.info(f"{name}: forgotten (the directory {record['location']} was left in place)")
        else:
            report.info(f"{record['name']}: deleted {human_size(record['size_bytes'])} from the Hugging Face cache")
        if json:
            _emit_one(record, json)


def _quiet() -> bool:
    from mmtools.cli.common import Settings

    return Settings.quiet
