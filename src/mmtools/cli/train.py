"""train: fit models on your own data (train retrieval; train tagger lives in its own module)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from mmtools.cli.common import (CaptionColumnOption, DeviceOption, ImageColumnOption, Precision, Schedule,
                                command_session)

train_app = typer.Typer(name="train", help="Train models on your own data.", no_args_is_help=True,
                        rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


class Preset(str, Enum):
    phoclip = "phoclip"


class Freeze(str, Enum):
    image = "image"
    text = "text"


class Loss(str, Enum):
    infonce = "infonce"
    sigmoid = "sigmoid"



@train_app.command("retrieval")
def retrieval_command(
    data: Annotated[str, typer.Option("--data", "-d", help="Training data: JSONL records with an image 'path' "
                                      "(relative to the file, or absolute) and a 'caption' or a list of "
                                      "'captions'; or a CSV/TSV file with a header row.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Run directory: OUTPUT/model (the best model, "
                                        "what --model OUTPUT loads), OUTPUT/checkpoint, OUTPUT/metrics.jsonl.")],
    val: Annotated[Optional[str], typer.Option("--val", help="Validation data (same format): Recall@K each "
                                               "epoch, early stopping and the best model by it.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.9, help="Without --val, hold "
                                                "out this fraction of the training images for validation.")] = 0.0,
    base: Annotated[Optional[str], typer.Option("--base", help="Fine-tune this dual encoder (CLIP, SigLIP, "
                                                "SigLIP 2): a Hugging Face id, an alias or a directory.")] = None,
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="Build a two-tower model: its "
                                                        "text tower (any transformers text model, e.g. "
                                                        "vinai/phobert-base).")] = None,
    image_encoder: Annotated[Optional[str], typer.Option("--image-encoder", help="... and its image tower (any "
                                                         "transformers vision model, e.g. microsoft/resnet-50 "
                                                         "or a ViT).")] = None,
    preset: Annotated[Optional[Preset], typer.Option("--preset", help="phoclip: vinai/phobert-base + "
                                                     "microsoft/resnet-50 into 512-d, captions up to 70 "
                                                     "tokens, batch 64 (options given explicitly win).")] = None,
    projection_dim: Annotated[int, typer.Option("--projection-dim", min=1, help="Size of the shared space of "
                                                "a two-tower model.")] = 512,
    max_length: Annotated[Optional[int], typer.Option("--max-length", min=4, help="Tokens per caption "
                                                      "[default: the model's limit].")] = None,
    loss: Annotated[Optional[Loss], typer.Option("--loss", help="infonce (symmetric, learnable temperature "
                                                 "from 0.07) or sigmoid [default: sigmoid for SigLIP bases, "
                                                 "infonce otherwise].")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", min=2, help="Pairs per step "
                                                      "[default: 32; phoclip: 64].")] = None,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Batches per optimiser step, their "
                                            "gradients averaged. Saves memory, but each batch stays its own "
                                            "contrastive problem: a pair sees only the negatives of its own "
                                            "--batch-size, not those of the larger batch.")] = 1,
    lr_image: Annotated[float, typer.Option("--lr-image", min=0.0, help="Learning rate of the image tower.")]
        = 1e-4,
    lr_text: Annotated[float, typer.Option("--lr-text", min=0.0, help="Learning rate of the text tower.")] = 1e-5,
    lr_heads: Annotated[float, typer.Option("--lr-heads", min=0.0, help="Learning rate of the projection heads "
                                            "and the temperature.")] = 1e-3,
    schedule: Annotated[Schedule, typer.Option("--schedule", help="After a linear warm-up.")] = Schedule.cosine,
    warmup: Annotated[float, typer.Option("--warmup", min=0.0, max=1.0, help="Warm-up, as a fraction of the "
                                          "steps.")] = 0.05,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 0.01,
    precision: Annotated[Precision, typer.Option("--precision", help="auto: bf16/fp16 autocast on CUDA, fp32 "
                                                 "on CPU.")] = Precision.auto,
    patience: Annotated[int, typer.Option("--patience", min=0, help="Stop after this many epochs without a "
                                          "better validation Recall (0: never stop early).")] = 3,
    freeze: Annotated[Optional[Freeze], typer.Option("--freeze", help="Keep this tower as it is (LiT: "
                                                     "--freeze image).")] = None,
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters (peft) on the towers instead of "
                                       "their weights; the heads learn in full. Merged into the saved weights.")]
        = False,
    lora_rank: Annotated[int, typer.Option("--lora-rank", min=1)] = 8,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = 16,
    lora_keep_adapters: Annotated[bool, typer.Option("--lora-keep-adapters", help="Also save the adapters "
                                                     "alone (peft format) in OUTPUT/model/adapters/.")] = False,
    image_column: ImageColumnOption = "path",
    caption_column: CaptionColumnOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first missing or corrupt image "
                                         "instead of skipping it.")] = False,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Write the per-epoch metrics (JSONL) "
                                                   "here instead of standard output.")] = None,
    log_dir: Annotated[Optional[str], typer.Option("--log-dir", help="TensorBoard logs here (needs "
                                                   "tensorboard).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Go on from OUTPUT's last checkpoint (same data and "
                                         "model options).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a previous run in OUTPUT.")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    workers: Annotated[int, typer.Option("--workers", min=0, help="DataLoader processes decoding images.")] = 2,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many "
                                                     "optimiser steps (smoke runs, benchmarks).")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Train a dual encoder for image-text retrieval: fine-tune CLIP/SigLIP (--base), or build a PhoCLIP-style
    model from a text tower and an image tower (--text-encoder, --image-encoder, or --preset phoclip).

    Metrics of each epoch go to standard output as JSONL (or --metrics FILE); the best model by validation
    Recall lands in OUTPUT/model, and every command loads it with --model OUTPUT. Runs unchanged under
    torchrun for several GPUs.

    Example: mmtools train retrieval --data train.jsonl --val val.jsonl --base siglip2-base -o my-model
    """
    with command_session("train retrieval") as session:
        from mmtools.cli.ranks import skipped_summary, speaking_rank
        from mmtools.train.engine import TrainConfig

        report = speaking_rank(session)
        from mmtools.train.retrieval import PRESETS, ModelOptions, fit_with_memory_hint, load_pairs, train_retrieval

        chosen = PRESETS[preset.value] if preset else {}
        options = ModelOptions(
            base=base, text_encoder=text_encoder or chosen.get("text_encoder"),
            image_encoder=image_encoder or chosen.get("image_encoder"),
            projection_dim=projection_dim if projection_dim != 512 or not chosen else chosen["projection_dim"],
            max_length=max_length or chosen.get("max_length"), loss=loss.value if loss else None,
            lr_image=lr_image, lr_text=lr_text, lr_heads=lr_heads, freeze=freeze.value if freeze else None,
            lora=lora, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_keep_adapters=lora_keep_adapters)
        options.check()
        size = batch_size or chosen.get("batch_size", 32)
        config = TrainConfig(epochs=epochs, batch_size=size, grad_accum=grad_accum, schedule=schedule.value,
                             warmup=warmup, weight_decay=weight_decay, precision=precision.value,
                             patience=patience or None, seed=seed, workers=workers, max_steps=max_steps,
                             device=None if device == "auto" else device)
        columns = caption_column or ["caption", "captions"]
        examples = load_pairs(data, "training data", image_column=image_column, caption_columns=columns,
                              strict=strict, on_problem=report.problem)
        val_examples = []
        if val:
            val_examples = load_pairs(val, "validation data", image_column=image_column, caption_columns=columns,
                                      strict=strict, on_problem=report.problem)
        elif val_fraction:
            from mmtools.train.data import split_examples

            examples, val_examples = split_examples(examples, val_fraction, seed=seed)
        report.info(f"{len(examples)} training images, {len(val_examples)} validation images")
        sink = open(metrics, "a" if resume else "w", encoding="utf-8") if metrics else sys.stdout

        def write_metrics(values: dict) -> None:
            import json

            sink.write(json.dumps(values, ensure_ascii=False) + "\n")
            sink.flush()

        try:
            result = fit_with_memory_hint(lambda: train_retrieval(
                examples, val_examples, options, config, output, resume=resume, overwrite=overwrite,
                run_info={"data": _resolved(data), "val": _resolved(val), "val_fraction": val_fraction, "image_column": image_column,
                          "caption_columns": columns},
                on_metrics=write_metrics, progress=report.progress, log_dir=log_dir), size)
        finally:
            if metrics:
                sink.close()
        best = result.best_metrics
        monitor = "val_mean_recall" if "val_mean_recall" in best else "train_loss"
        report.info(f"best epoch {result.best_epoch} of {result.epochs_run}"
                    f"{' (stopped early)' if result.stopped_early else ''}: {monitor} {best.get(monitor)}; "
                    f"use it with --model {output}")
        skipped_summary(report, output)


def _resolved(path: str | None) -> str | None:
    import os

    return os.path.realpath(path) if path else None
