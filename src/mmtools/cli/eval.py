"""eval: measure models on your own data (eval retrieval; eval tagging lives in its own module)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import (CaptionColumnOption, DeviceOption, ImageColumnOption, OutputOption,
                                RuntimeChoice, RuntimeOption, command_session)
from mmtools.cli.output import Column, OutputFormat, OutputFormatOption, emit_records, resolve_format
from mmtools.errors import UsageError

eval_app = typer.Typer(name="eval", help="Evaluate models on your own data.", no_args_is_help=True,
                       rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


@eval_app.command("retrieval")
def retrieval_command(
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Test data: JSONL records with an image "
                                                "'path' and a 'caption' or 'captions' (or CSV with a header).")]
        = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Model to evaluate on --data "
                                                       "(repeatable: one report, models side by side) "
                                                       "[default: MMTOOLS_MODEL, else SigLIP 2 base].")] = None,
    images: Annotated[Optional[list[str]], typer.Option("--images", help="Precomputed image embedding records "
                                                        "(with 'id'); repeatable, paired with --texts.")] = None,
    texts: Annotated[Optional[list[str]], typer.Option("--texts", help="Precomputed text embedding records, "
                                                       "each naming its image in 'image_id'.")] = None,
    fuse: Annotated[bool, typer.Option("--fuse", help="Also evaluate the fusion of the models' rankings "
                                       "(reciprocal rank fusion, or --weights).")] = False,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Comma-separated weights, one per model: "
                                                   "fuse weighted normalised scores instead of RRF.")] = None,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Draw Recall@K curves into this PNG (needs "
                                                "matplotlib).")] = None,
    image_column: ImageColumnOption = "path",
    caption_column: CaptionColumnOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 32,
    device: DeviceOption = "auto",
    runtime: RuntimeOption = RuntimeChoice.auto,
    output: OutputOption = None,
    fmt: OutputFormatOption = OutputFormat.auto,
) -> None:
    """Recall@1/5/10, median and mean rank, text->image and image->text: one JSON object, or on a terminal
    a table (a row per model and direction, and what a model ranking at random would score).

    Several captions per image are scored by the standard protocol: each caption finds its image; each image
    counts as found at the best rank of any of its captions. Ties count against the model.

    Example: mmtools eval retrieval --data test.jsonl -m siglip2-base -m ./my-model --fuse --plot recall.png
    """
    with command_session("eval retrieval") as report:
        from mmtools.evaluate.report import evaluate_retrieval

        if data and (images or texts):
            raise UsageError("give either --data with models, or precomputed --images and --texts, not both")
        if not data and not images:
            raise UsageError("nothing to evaluate", hint="pass --data test.jsonl --model MODEL, or "
                                                         "--images IMAGES.jsonl --texts TEXTS.jsonl")
        if images and len(images) != len(texts or []):
            raise UsageError("give one --texts file for each --images file, in the same order")
        weight_values = _weights(weights)
        result = evaluate_retrieval(
            data=data, models=model or [None], images=images or [], texts=texts or [], fuse=fuse or bool(weights),
            weights=weight_values, image_column=image_column,
            caption_columns=caption_column or ["caption", "captions"], batch_size=batch_size,
            device=None if device == "auto" else device, runtime=runtime.value, plot=plot,
            on_problem=report.problem)
        if resolve_format(fmt, output) == OutputFormat.table:
            emit_records(_table_rows(result), fmt, columns=RESULT_COLUMNS, output=output,
                         group_by=lambda _row: f"{result['images']} images, {result['texts']} captions")
            return
        import json

        from mmtools.records import open_output

        with open_output(output) as stream:
            stream.write((json.dumps(result, ensure_ascii=False) + "\n").encode("utf-8"))


RESULT_COLUMNS = [Column("model", "model", wrap=True), Column("direction", "direction")] + [
    Column(name, name, justify="right") for name in ("R@1", "R@5", "R@10", "median", "mean")] + [
    Column("mean recall", "mean_recall", justify="right")]


def _table_rows(result: dict) -> list[dict]:
    """A row per model and direction (text → image, image → text), then chance's Recall@K."""
    rows = []
    for entry in result["results"]:
        for key, direction in (("t2i", "text → image"), ("i2t", "image → text")):
            metrics = entry.get(key) or {}
            rows.append({"model": entry["model"] if key == "t2i" else "", "direction": direction,
                         **{name: metrics.get(name) for name in ("R@1", "R@5", "R@10")},
                         "median": metrics.get("median_rank"),
                         "mean": metrics.get("mean_rank"),
                         "mean_recall": entry.get("mean_recall") if key == "t2i" else None})
    rows.append({"model": "(chance)", "direction": "", **result.get("chance", {})})
    return rows


def _weights(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--weights {text!r} is not a comma-separated list of numbers") from None
