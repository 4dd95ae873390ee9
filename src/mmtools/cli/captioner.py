"""train captioner and eval captioning: captioners and question answerers trained and measured."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from mmtools.cli.common import DeviceOption, ImageColumnOption, Precision, Schedule, command_session


class Arch(str, Enum):
    tiny = "tiny"


def train_captioner_command(
    data: Annotated[str, typer.Option("--data", "-d", help="Training data: JSONL records with an image 'path' "
                                      "(relative to the file) and 'captions' (or a 'caption'), or a 'question' "
                                      "and its 'answer'; or CSV with a header row.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run directory: OUTPUT/model is the best "
                                        "captioner (what --model OUTPUT loads), OUTPUT/checkpoint, "
                                        "OUTPUT/metrics.jsonl.")],
    base: Annotated[Optional[str], typer.Option("--base", help="Fine-tune this captioner (BLIP, GIT, "
                                                "VisionEncoderDecoder or a chat VLM): a directory, an id or an "
                                                "alias of `mmtools caption --model`.")] = None,
    arch: Annotated[Optional[Arch], typer.Option("--arch", help="Train from scratch instead: tiny is a small "
                                                 "ViT + BERT-style decoder (a VisionEncoderDecoder) whose "
                                                 "tokenizer is learnt from the training texts.")] = None,
    val: Annotated[Optional[str], typer.Option("--val", help="Validation data (same format).")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.5, help="Without --val, hold "
                                                "out this fraction of the training images.")] = 0.1,
    image_size: Annotated[int, typer.Option("--image-size", min=8, help="--arch tiny: image side in pixels.")]
        = 64,
    patch_size: Annotated[int, typer.Option("--patch-size", min=2, help="--arch tiny: ViT patch side.")] = 8,
    hidden: Annotated[int, typer.Option("--hidden", min=8, help="--arch tiny: width of encoder and decoder.")]
        = 128,
    layers: Annotated[int, typer.Option("--layers", min=1, help="--arch tiny: layers of encoder and decoder.")]
        = 2,
    min_count: Annotated[int, typer.Option("--min-count", min=1, help="--arch tiny: syllables seen fewer times "
                                           "in the training texts read as unknown.")] = 2,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Items per step.")] = 32,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Batches per optimiser step.")] = 1,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0.0, help="Learning rate [default: 1e-3 from "
                                                "scratch, 5e-5 fine-tuning, 2e-4 with LoRA].")] = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--no-lora", help="Train LoRA adapters (peft) instead "
                                                 "of the weights, merged into the saved model [default: for "
                                                 "bases over 500M parameters].")] = None,
    lora_rank: Annotated[int, typer.Option("--lora-rank", min=1)] = 8,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = 16,
    schedule: Annotated[Schedule, typer.Option("--schedule", help="After a linear warm-up.")] = Schedule.cosine,
    warmup: Annotated[float, typer.Option("--warmup", min=0.0, max=1.0)] = 0.05,
    precision: Annotated[Precision, typer.Option("--precision", help="auto: bf16/fp16 autocast on CUDA, fp32 "
                                                 "on CPU.")] = Precision.auto,
    patience: Annotated[int, typer.Option("--patience", min=0, help="Stop after this many epochs without a "
                                          "better validation CIDEr (accuracy for questions); 0: never.")] = 3,
    image_column: ImageColumnOption = "path",
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Per-epoch metrics (JSONL) here instead "
                                                   "of standard output.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Go on from OUTPUT's last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous run in OUTPUT.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader processes decoding images.")] = 2,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many "
                                                     "optimiser steps.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Train a captioner, or a question answerer (records with 'question' and 'answer': the question is the
    decoder's prompt): fine-tune one (--base) or train a tiny one from scratch (--arch tiny).

    One JSON line per epoch goes to standard output (val_loss, and val_cider or val_accuracy on up to 128
    validation images); the best model lands in OUTPUT/model. Runs unchanged under torchrun.

    Example: mmtools train captioner --data captions.jsonl --arch tiny -o my-captioner
    """
    with command_session("train captioner") as session:
        from mmtools.caption.training import (CaptionerOptions, CaptionerTask, read_caption_items,
                                              split_by_image, starting_generator, train_captioner)
        from mmtools.cli.ranks import skipped_summary, speaking_rank
        from mmtools.cli.train import _resolved
        from mmtools.errors import UsageError
        from mmtools.train.engine import TrainConfig

        report = speaking_rank(session)
        if (base is None) == (arch is None):
            raise UsageError("give either --base MODEL (fine-tune) or --arch tiny (from scratch)")
        items = read_caption_items(data, image_column=image_column, on_problem=report.problem)
        if val:
            held = read_caption_items(val, image_column=image_column, on_problem=report.problem)
        elif val_fraction > 0:
            items, held = split_by_image(items, val_fraction, seed)
        else:
            held = []
        from mmtools.caption.evaluate import readable

        items, held = readable(items, report.problem), readable(held, report.problem)
        if not items:
            raise UsageError(f"{data} has no usable training items")
        tiny = dict(image_size=image_size, patch_size=patch_size, hidden=hidden, layers=layers, min_count=min_count,
                    seed=seed) if arch else None
        generator, untrained = starting_generator(base, tiny, items, output, resume=resume, overwrite=overwrite)
        options = CaptionerOptions(lr=lr or (1e-3 if arch else 2e-4 if lora else 5e-5), lora=lora,
                                   lora_rank=lora_rank, lora_alpha=lora_alpha)
        task = CaptionerTask(generator, items, held, options, batch_size=batch_size, base=base, untrained=untrained)
        report.info(f"{len(items)} training and {len(held)} validation items "
                    f"({'questions' if task.questions else 'captions'}); {generator.family} model"
                    + (" with LoRA adapters" if task.lora else ""))
        config = TrainConfig(epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, schedule=schedule.value,
                             warmup=warmup, precision=precision.value, patience=patience or None, seed=seed,
                             workers=workers, max_steps=max_steps, device=None if device == "auto" else device)
        sink = open(metrics, "a" if resume else "w", encoding="utf-8") if metrics else sys.stdout

        def write(values: dict[str, Any]) -> None:
            sink.write(json.dumps(values, ensure_ascii=False) + "\n")
            sink.flush()

        run_info = {"data": _resolved(data), "val": _resolved(val), "base": base, "arch": arch.value if arch else None}
        try:
            # From scratch, OUTPUT already holds the untrained model (prepare_untrained checked OUTPUT first).
            result = train_captioner(task, config, output, resume=resume, overwrite=overwrite or arch is not None,
                                     on_metrics=write,
                                     progress=report.progress, run_info=run_info)
        finally:
            if metrics:
                sink.close()
        best = result.best_metrics
        monitor = task.monitor() if task.monitor() in best else "train_loss"
        report.info(f"{output}: best epoch {result.best_epoch} of {result.epochs_run}"
                    f"{' (stopped early)' if result.stopped_early else ''}: {monitor} {best.get(monitor)}; "
                    f"use it with: mmtools caption --model {output}")
        skipped_summary(report, output)


def eval_captioning_command(
    data: Annotated[str, typer.Option("--data", "-d", help="Test data: JSONL records with an image 'path' and "
                                      "'captions' (or 'caption'), or 'question' and 'answer'.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="A captioner (repeatable: reported side by "
                                             "side).")],
    train: Annotated[Optional[str], typer.Option("--train", help="Training data the most-frequent baseline is "
                                                 "taken from [default: what each model's manifest records].")]
        = None,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Also report each model's "
                                            "untrained self and the most frequent training caption.")] = True,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 30,
    num_beams: Annotated[int, typer.Option("--num-beams", min=1, help="1: greedy.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 16,
    image_column: ImageColumnOption = "path",
    device: DeviceOption = "auto",
) -> None:
    """BLEU-4 and CIDEr of captioners (exact-match accuracy for questions), one JSON line per model and
    baseline (a table on a terminal). Captions are compared in syllables, lower case, without punctuation.

    Example: mmtools eval captioning --data test.jsonl -m my-captioner -m blip-base
    """
    with command_session("eval captioning") as report:
        from mmtools.caption.evaluate import evaluate_captioners
        from mmtools.caption.loading import load_captioner
        from mmtools.caption.training import read_caption_items
        from mmtools.records import RecordWriter

        items = read_caption_items(data, image_column=image_column, on_problem=report.problem)
        train_items = read_caption_items(train, image_column=image_column, on_problem=report.problem) if train else None
        chosen = None if device == "auto" else device
        rows = evaluate_captioners(items, model, load=lambda name: load_captioner(name, chosen),
                                   train_items=train_items, baselines=baselines, on_problem=report.problem,
                                   max_new_tokens=max_new_tokens, num_beams=num_beams, batch_size=batch_size)
        if sys.stdout.isatty():
            sys.stdout.write(_table(rows))
            return
        writer = RecordWriter(sys.stdout.buffer)
        for row in rows:
            writer.write(row)


def _table(rows: list[dict[str, Any]]) -> str:
    from mmtools.cli.tagger import _columns

    if "accuracy" in rows[0]:
        header = ["model", "baseline", "questions", "accuracy"]
        body = [[r["model"], r["baseline"] or "", str(r["questions"]), f"{r['accuracy']:.4f}"] for r in rows]
    else:
        header = ["model", "baseline", "images", "BLEU-4", "CIDEr"]
        body = [[r["model"], r["baseline"] or "", str(r["images"]), f"{r['bleu4']:.4f}", f"{r['cider']:.4f}"]
                for r in rows]
    text = _columns([header, *body])
    return text + "".join(f"{r['model']}: {r['caption']}\n" for r in rows if r.get("caption"))
