"""train tagger and eval tagging: multi-label taggers over text, images or both."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from mmtools.cli.common import DeviceOption, Precision, Schedule, command_session


class Modality(str, Enum):
    text = "text"
    image = "image"
    both = "both"


class Fusion(str, Enum):
    concat = "concat"
    late = "late"
    attention = "attention"



TextColumnsOption = Annotated[Optional[list[str]], typer.Option(
    "--text-column", help="Text column(s) or field(s), joined when several (repeatable) [default: text, caption, "
                          "captions; CSV: mota].")]
ImageColumnOption = Annotated[Optional[str], typer.Option(
    "--image-column", help="Image path column or field, relative to the data file [default: path; CSV: "
                           "image_path].")]
TagsColumnOption = Annotated[Optional[str], typer.Option(
    "--tags-column", help="Tags column or field: a JSON list, or labels joined by --tags-separator [default: "
                          "tags; CSV: dacdiem].")]
SeparatorOption = Annotated[str, typer.Option(
    "--tags-separator", help="What separates the labels of a tags column given as one string.")]


def _read(path: str, text_columns, image_column, tags_column, separator, report) -> list:
    from mmtools.tag.data import read_tagging_examples

    return read_tagging_examples(path, text_columns=text_columns, image_column=image_column,
                                 tags_column=tags_column, tags_separator=separator, on_problem=report.problem)


def train_tagger_command(
    data: Annotated[str, typer.Option("--data", "-d", help="Training data: JSONL records with 'text' and/or "
                                                           "'path' and 'tags', or a CSV with a header row.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Training directory: the best tagger is written "
                                                               "to OUTPUT/model (load it with --model OUTPUT).")],
    val: Annotated[Optional[str], typer.Option(
        "--val", help="Validation data (same format); thresholds are tuned on it and it decides early stopping.")]
        = None,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", min=0.0, max=0.5, help="Without --val, hold out this fraction of --data for "
                                                 "validation (0: none; thresholds stay at 0.5).")] = 0.1,
    modality: Annotated[Modality, typer.Option("--modality", help="What the tagger reads.")] = Modality.both,
    fusion: Annotated[Fusion, typer.Option(
        "--fusion", help="With --modality both: concat (pooled features into one MLP), late (one head per tower, "
                         "averaged; can tag records with one modality), attention (text tokens attend to the "
                         "image's patches of the same sample).")] = Fusion.concat,
    base: Annotated[Optional[str], typer.Option(
        "--base", help="Take both towers from this dual encoder (CLIP, SigLIP, VisionTextDualEncoder).")] = None,
    text_model: Annotated[Optional[str], typer.Option(
        "--text-model", help="Text tower: any transformers text model, e.g. vinai/phobert-base (PhoBERT input "
                             "is word-segmented automatically).")] = None,
    image_model: Annotated[Optional[str], typer.Option(
        "--image-model", help="Image tower: any transformers vision model, e.g. microsoft/resnet-34.")] = None,
    text_column: TextColumnsOption = None,
    image_column: ImageColumnOption = None,
    tags_column: TagsColumnOption = None,
    tags_separator: SeparatorOption = ",",
    epochs: Annotated[int, typer.Option(
        "--epochs", min=0, help="Stage 1 epochs: the text tower frozen, the image tower and heads learn.")] = 5,
    finetune_epochs: Annotated[int, typer.Option(
        "--finetune-epochs", min=0, help="Stage 2 epochs: everything learns at --finetune-lr-scale times the "
                                         "learning rates.")] = 5,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate of the fusion layers and heads.")]
        = 1e-3,
    text_lr: Annotated[float, typer.Option("--text-lr", min=0.0, help="Learning rate of the text tower.")]
        = 1e-4,
    image_lr: Annotated[float, typer.Option("--image-lr", min=0.0, help="Learning rate of the image tower.")]
        = 1e-4,
    finetune_lr_scale: Annotated[float, typer.Option(
        "--finetune-lr-scale", min=0.0, help="Stage 2 learning rates as a fraction of stage 1's.")] = 0.1,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Examples per step.")] = 32,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Steps whose gradients are summed "
                                                                        "before each update.")] = 1,
    schedule: Annotated[Schedule, typer.Option("--schedule", help="Learning-rate schedule (after a linear "
                                                                  "warm-up).")] = Schedule.cosine,
    patience: Annotated[Optional[int], typer.Option(
        "--patience", min=1, help="Stop after this many epochs without a better validation micro-F1.")] = 3,
    fusion_dim: Annotated[int, typer.Option("--fusion-dim", min=1, help="Width the towers are projected to.")]
        = 256,
    hidden_dim: Annotated[int, typer.Option("--hidden-dim", min=1, help="Hidden width of the MLP head.")] = 512,
    dropout: Annotated[float, typer.Option("--dropout", min=0.0, max=0.9, help="Dropout in the head.")] = 0.3,
    modality_dropout: Annotated[float, typer.Option(
        "--modality-dropout", min=0.0, max=0.9,
        help="Concat and attention fusion: the share of training examples whose text or image is withheld "
             "(half each) and stood in for by a learned 'missing' embedding, so that the tagger also tags "
             "records without a photo or a description (0: a tagger that needs both).")] = 0.3,
    text_pooling: Annotated[str, typer.Option(
        "--text-pooling", help="Sentence vector of a BERT-style text tower: first ([CLS]) or mean.")] = "first",
    min_label_count: Annotated[int, typer.Option(
        "--min-label-count", min=1, help="Leave out labels seen in fewer training examples.")] = 1,
    precision: Annotated[Precision, typer.Option(
        "--precision", help="auto: bf16 or fp16 on a GPU, fp32 on the CPU.")] = Precision.auto,
    device: DeviceOption = "auto",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Processes decoding images.")] = 2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first unreadable image instead of "
                                                          "skipping it.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Go on from OUTPUT's last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty OUTPUT.")] = False,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Write the per-epoch metrics and the "
                                                   "summary (JSONL) here instead of standard output.")] = None,
) -> None:
    """Train a multi-label tagger on text, images or both; per-label thresholds are tuned on validation data.

    One JSON line per epoch goes to standard output (or --metrics FILE), then a summary line; messages go to
    standard error. micro_f1 and macro_f1 are on the validation data at threshold 0.5; crossfit_micro_f1 and
    crossfit_macro_f1 are at tuned thresholds, each half of the validation images scored at thresholds tuned
    on the other half (never on the rows they were tuned on).

    Example: mmtools train tagger --data rooms.csv --text-model vinai/phobert-base
    --image-model microsoft/resnet-34 --fusion attention -o rooms-tagger
    """
    with command_session("train tagger") as report:
        from mmtools.cli.ranks import is_main_rank
        from mmtools.errors import UsageError
        from mmtools.models.device import choose_device
        from mmtools.tag.training import (TaggerOptions, TaggerTask, train_tagger, training_summary,
                                          usable_examples)
        from mmtools.train.data import check_images, require_examples, split_examples
        from mmtools.train.engine import TrainConfig

        options = TaggerOptions(modality=modality.value, fusion=fusion.value, base=base, text_model=text_model,
                                image_model=image_model, fusion_dim=fusion_dim, hidden_dim=hidden_dim,
                                dropout=dropout, text_pooling=text_pooling, head_lr=lr, text_lr=text_lr,
                                image_lr=image_lr, frozen_epochs=epochs, finetune_epochs=finetune_epochs,
                                finetune_lr_scale=finetune_lr_scale, min_label_count=min_label_count,
                                modality_dropout=modality_dropout)
        if text_pooling not in ("first", "mean"):
            raise UsageError(f"--text-pooling {text_pooling!r}: use first or mean")
        options.check()
        columns = (text_column, image_column, tags_column, tags_separator, report)
        needs_image = modality != Modality.text
        one = options.learns_missing
        train = usable_examples(_read(data, *columns), options.modality, "training", report.problem,
                                one_is_enough=one)
        source = None
        if val:
            held = usable_examples(_read(val, *columns), options.modality, "validation", report.problem,
                                   one_is_enough=one)
            source = {"path": _resolved(val)}
        elif val_fraction > 0 and len(train) >= 10:
            train, held = split_examples(train, val_fraction, seed)
            source = {"held_out_of": _resolved(data), "fraction": val_fraction, "seed": seed}
        else:
            held = []
        if needs_image:
            train = check_images(train, strict=strict, on_problem=report.problem)
            held = check_images(held, strict=strict, on_problem=report.problem)
        train = require_examples(train, "training data")
        if not held:
            report.warning("no validation data: thresholds stay at 0.5 and there is no early stopping "
                           "(give --val, or --val-fraction)")
        task = TaggerTask(options, train, held, batch_size=batch_size, seed=seed, val_source=source)
        report.info(f"{len(train)} training and {len(held)} validation examples, {len(task.labels)} labels, "
                    f"reading {options.modality}" + (f" ({options.fusion} fusion)" if modality == Modality.both
                                                     else ""))
        config = TrainConfig(batch_size=batch_size, grad_accum=grad_accum, schedule=schedule.value,
                             precision=precision.value, patience=patience if held else None,
                             monitor="micro_f1" if held else "loss", seed=seed, workers=workers,
                             device=choose_device(device))
        sink = open(metrics, "a" if resume else "w", encoding="utf-8") if metrics else sys.stdout

        def write(values: dict[str, Any]) -> None:
            sink.write(json.dumps(values, ensure_ascii=False) + "\n")
            sink.flush()

        # What a resumed run must share with the first (epoch counts may change: a run can be extended).
        kept = {k: v for k, v in vars(options).items() if k not in ("frozen_epochs", "finetune_epochs")}
        run_info = {"data": str(data), "val": str(val), "options": kept, "labels": task.labels}
        try:
            result = train_tagger(task, config, output, resume=resume, overwrite=overwrite, on_metrics=write,
                                  progress=report.progress, run_info=run_info)
            if is_main_rank():  # under torchrun, rank 0 alone has the figures
                write(training_summary(result, len(train), len(held), source))
        finally:
            if metrics:
                sink.close()
        best = result.best_metrics
        score = (f"; validation micro-F1 {best['micro_f1']:.4f} at threshold 0.5" if "micro_f1" in best else "")
        if "crossfit_micro_f1" in best:
            score += (f", {best['crossfit_micro_f1']:.4f} at tuned thresholds (cross-fitted: each half of the "
                      "validation images scored at thresholds tuned on the other half)")
        report.info(f"{output}: best epoch {result.best_epoch} of {result.epochs_run}{score}"
                    + (" (stopped early)" if result.stopped_early else "")
                    + f"; use it with: mmtools tag --model {output}")


def _resolved(path: str) -> str:
    import os

    return os.path.realpath(path)


def eval_tagging_command(
    data: Annotated[str, typer.Option("--data", "-d", help="Labelled test data (JSONL or CSV, as for train "
                                                           "tagger).")],
    model: Annotated[list[str], typer.Option(
        "--model", "-m", help="A trained tagger (repeatable: several are reported side by side).")],
    per_label: Annotated[bool, typer.Option("--per-label", help="Add precision, recall and F1 per label.")]
        = False,
    plot: Annotated[Optional[str], typer.Option(
        "--plot", help="Draw per-label F1 bars, one per model, to this PNG file (needs matplotlib).")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", min=0.0, max=1.0, help="One threshold for every label instead of each model's tuned "
                                              "ones.")] = None,
    text_column: TextColumnsOption = None,
    image_column: ImageColumnOption = None,
    tags_column: TagsColumnOption = None,
    tags_separator: SeparatorOption = ",",
    device: DeviceOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Examples per forward pass.")]
        = 32,
) -> None:
    """Evaluate taggers: micro and macro precision, recall and F1, one JSON line per model (a table on a
    terminal).

    Example: mmtools eval tagging --data test.jsonl -m text-tagger -m image-tagger -m fused-tagger --plot f1.png
    """
    with command_session("eval tagging") as report:
        from mmtools.records import RecordWriter
        from mmtools.tag.evaluate import evaluate_tagger
        from mmtools.tag.trained import TrainedTagger

        examples = _read(data, text_column, image_column, tags_column, tags_separator, report)
        results = []
        for name in model:
            tagger = TrainedTagger(name, device)
            result = evaluate_tagger(tagger, examples, threshold=threshold, batch_size=batch_size,
                                     on_problem=report.problem, data_path=data)
            result = {"model": name, "model_path": result.pop("model"), **result}
            results.append(result)
        if plot:
            from mmtools.plotting import label_bars

            label_bars(plot, {r["model"]: {label: v["f1"] for label, v in r["per_label"].items()} for r in results},
                       title=f"Per-label F1 on {data}")
            report.info(f"per-label F1 drawn in {plot}")
        if sys.stdout.isatty():
            sys.stdout.write(_table(results, per_label))
            return
        writer = RecordWriter(sys.stdout.buffer)
        for result in results:
            writer.write(result if per_label else {k: v for k, v in result.items() if k != "per_label"})


def _table(results: list[dict[str, Any]], per_label: bool) -> str:
    header = ["model", "reads", "examples", "micro P", "micro R", "micro F1", "macro P", "macro R", "macro F1"]

    def row(name: str, reads: str, figures: dict[str, Any]) -> list[str]:
        return [name, reads, str(figures["examples"]),
                *(f"{figures[avg][m]:.4f}" for avg in ("micro", "macro") for m in ("precision", "recall", "f1"))]

    rows = []
    for r in results:
        rows.append(row(r["model"], r["reads"], r))
        # A tagger that can do without a modality: its figures with both, and with each one alone.
        rows.extend(row(f"  {mode}", "", figures) for mode, figures in r.get("modes", {}).items())
    text = _columns([header, *rows]) + "".join(_thresholds_line(r) for r in results if "thresholds" in r)
    if per_label:
        labels = sorted({label for r in results for label in r["per_label"]})
        head = ["label", "support", *(f"F1 {r['model']}" for r in results)]
        body = [[label, str(max(r["per_label"].get(label, {}).get("support", 0) for r in results)),
                 *(_label_f1(r["per_label"].get(label)) for r in results)]
                for label in labels]
        text += "\n" + _columns([head, *body])
    return text


def _label_f1(figures: dict[str, Any] | None) -> str:
    """A label's F1, or why there is none: no test example has it (any prediction of it is then wrong)."""
    if figures is None:
        return "-"
    if not figures.get("support"):
        return "no examples"
    return f"{figures['f1']:.4f}"


def _tuned_on(tuned: Any) -> str:
    """Where thresholds were tuned, in words: the validation file, or the share held out of the training data."""
    if not isinstance(tuned, dict):
        return str(tuned)
    where = (tuned["path"] if tuned.get("path") else
             f"{tuned.get('fraction', 0):.0%} held out of {tuned['held_out_of']}" if tuned.get("held_out_of")
             else "the validation data")
    examples = tuned.get("examples")
    return where + (f" ({examples} examples)" if examples else "")


def _thresholds_line(result: dict[str, Any]) -> str:
    """Which thresholds a model's figures come from (the JSON's thresholds, tuned_on, tuned_on_this_data)."""
    line = f"{result['model']}: {result['thresholds']}"
    if result.get("tuned_on"):
        line += f", tuned on {_tuned_on(result['tuned_on'])}"
    if result.get("tuned_on_this_data"):
        line += " (this data: the figures flatter the model)"
    return line + "\n"


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                             enumerate(zip(row, widths))).rstrip() + "\n" for row in rows)
