"""The training engine shared by `train retrieval` and `train tagger`.

A task (what is learnt: a dual encoder, a tagger) supplies the model, its parameter groups, a collate
function, a loss, an evaluation and a way to save itself. The engine does the rest the same way for every
task: AdamW with per-group learning rates and no weight decay on biases and norms, warm-up then a cosine,
one-cycle or constant schedule, gradient accumulation, mixed precision on GPUs, DistributedDataParallel
under torchrun / accelerate launch, stages (e.g. a frozen tower first), early stopping on a validation
metric, and an atomic checkpoint every epoch from which ``resume`` goes on.

Output layout (OUTPUT is what ``--model OUTPUT`` loads):

    OUTPUT/mmtools.json    manifest pointing at model/
    OUTPUT/model/          the best model so far, written by task.save, swapped in atomically
    OUTPUT/checkpoint/     the last finished epoch: weights, optimiser, schedule, counters (atomic)
    OUTPUT/metrics.jsonl   one line per epoch
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from mmtools import __version__
from mmtools.atomic import atomic_directory, recover_directory, sweep_temporaries
from mmtools.errors import MissingDependencyError, MmtoolsError, UsageError
from mmtools.records import atomic_path

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "training_state.pt"
TRAINER_FILE = "trainer.json"
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
GO_ON, PLATEAU, BUDGET_SPENT = 0, 1, 2  # how a stage (or epoch) ended


class TrainingError(MmtoolsError):
    """Training cannot start or go on (bad output directory, out of memory, a run that does not match)."""


@dataclass
class Stage:
    """A phase of training: which parameter groups learn, and at what fraction of their learning rates."""

    epochs: int
    trainable: set[str] | None = None  # names of the task's parameter groups; None: all of them
    lr_scale: float = 1.0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    grad_accum: int = 1
    schedule: str = "cosine"
    warmup: float = 0.05  # fraction of each stage's optimiser steps
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0
    precision: str = "auto"
    patience: int | None = 3  # epochs without improvement before stopping; None: never stop early
    monitor: str = "loss"  # a key of task.evaluate(); names ending in "loss" are better lower
    seed: int = 0
    workers: int = 2
    device: str | None = None
    stages: list[Stage] | None = None
    max_steps: int | None = None  # stop after this many optimiser steps in all (smoke runs, benchmarks)

    def all_stages(self) -> list[Stage]:
        return self.stages or [Stage(self.epochs)]

    def check(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}", hint=f"use one of {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1 or self.grad_accum < 1 or any(s.epochs < 0 for s in self.all_stages()):
            raise UsageError("batch size, gradient accumulation and epochs must be positive")


class TrainTask(Protocol):
    model: Any

    def param_groups(self) -> list[dict[str, Any]]:
        """``[{"name": "image", "params": [...], "lr": 1e-4}, ...]``; every trainable parameter in one group."""

    def collate(self, examples: list[Any]) -> Any:
        """DataLoader collate_fn (runs in worker processes): examples to a batch of tensors."""

    def loss(self, model: Any, batch: Any) -> Any:
        """The scalar loss of a batch; ``model`` may be wrapped in DistributedDataParallel."""

    def evaluate(self, model: Any) -> dict[str, float]:
        """Validation metrics (called on rank 0 with the unwrapped model in eval mode)."""

    def save(self, model: Any, directory: Path) -> None:
        """Write a model directory that mmtools can load (``--model``)."""


@dataclass
class TrainResult:
    model_dir: Path
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False


# ------------------------------------------------------------------------------------------ distribution


@dataclass(frozen=True)
class Distribution:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distribution() -> Distribution:
    """torchrun and accelerate launch say how many processes run and which one this is in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Distribution()
    return Distribution(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def _init_distributed(dist_info: Distribution, device: str) -> bool:
    """Join the launcher's process group; whether this call made it (and so must destroy it)."""
    import torch.distributed as dist

    if dist_info.world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        return True
    return False


def _end_distributed() -> None:
    """Leave the process group while the interpreter is whole: a group left to exit-time teardown can abort
    the process ("terminate called without an active exception", SIGABRT) after training has succeeded."""
    import gc

    import torch.distributed as dist

    if dist.is_initialized():
        gc.collect()  # the DDP wrapper (a reference cycle) holds the group; free it first
        dist.destroy_process_group()


def gather_for_loss(tensor: Any) -> Any:
    """All ranks' rows of ``tensor`` (this rank's first), gradients kept, so a contrastive loss sees the
    global batch under DDP; the tensor itself in a single process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # deprecated for a private API; still the one that carries gradients
        warnings.simplefilter("ignore", FutureWarning)
        parts = list(all_gather(tensor))
    rank = dist.get_rank()
    return torch.cat([parts[rank]] + parts[:rank] + parts[rank + 1:])


def unwrap(model: Any) -> Any:
    """The model inside a DistributedDataParallel (or compiled) wrapper."""
    while hasattr(model, "module"):
        model = model.module
    return getattr(model, "_orig_mod", model)


# ------------------------------------------------------------------------------------------ helpers


def move_to(batch: Any, device: str) -> Any:
    """Tensors anywhere in a (nested) batch onto ``device``, copied asynchronously from pinned memory."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    if hasattr(batch, "to") and hasattr(batch, "keys"):  # transformers' BatchEncoding / BatchFeature
        return batch.to(device)
    return batch


def _autocast_dtype(precision: str, device: str) -> Any:
    import torch

    if not device.startswith("cuda") or precision == "fp32":
        return None  # CPU training stays in fp32: autocast there is slower than it saves
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def _is_lower_better(metric: str) -> bool:
    return metric.endswith("loss") or metric.endswith("rank")


def _decay_split(params: list[Any]) -> tuple[list[Any], list[Any]]:
    """Biases and norm weights (1-d tensors) get no weight decay, as in BERT and CLIP training."""
    decay = [p for p in params if p.ndim >= 2]
    plain = [p for p in params if p.ndim < 2]
    return decay, plain


def _schedule_factor(schedule: str, step: int, total: int, warmup_steps: int) -> float:
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total <= warmup_steps:
        return 1.0
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _memory_hint(config: TrainConfig, task: Any = None) -> str:
    half = max(1, config.batch_size // 2)
    if half == 1:
        return "try --batch-size 1"
    accum = f"--grad-accum {config.grad_accum * 2}"
    if getattr(task, "contrastive", False):
        # Accumulated micro-batches each see only their own negatives: not the larger batch's loss.
        return (f"try --batch-size {half}; {accum} keeps {config.batch_size * config.grad_accum} pairs per "
                f"update, but each pair is contrasted with the {half - 1} others of its own batch only")
    return f"try --batch-size {half} with {accum} to keep the effective batch of {config.batch_size * config.grad_accum}"


def _non_finite_hint(autocast_dtype: Any) -> str:
    import torch

    if autocast_dtype == torch.float16:
        return "lower the learning rates, or train in bf16 or fp32 (--precision bf16, --precision fp32)"
    return "lower the learning rates; check that the data and the starting model hold no NaN weights"


def _average_gradients_across_ranks(model: Any) -> None:
    import torch.distributed as dist

    world = dist.get_world_size()
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(world)


# ------------------------------------------------------------------------------------------ the trainer


class Trainer:
    def __init__(self, task: TrainTask, train_dataset: Any, config: TrainConfig, output: str | os.PathLike[str],
                 *, resume: bool = False, overwrite: bool = False,
                 on_metrics: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[str, int], Any] | None = None, log_dir: str | None = None,
                 run_info: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None):
        config.check()
        self.task = task
        self.dataset = train_dataset
        self.config = config
        self.output = Path(output)
        self.resume = resume
        self.on_metrics = on_metrics
        self.progress = progress
        self.log_dir = log_dir
        self.run_info = json.loads(json.dumps(run_info or {}, default=str))  # as it will read back
        self.manifest = manifest or {}
        self.dist = distribution()
        self._prepare_output(overwrite)

    # -- output directory
    def _prepare_output(self, overwrite: bool) -> None:
        checkpoint = self.output / CHECKPOINT_DIR
        recover_directory(checkpoint)
        recover_directory(self.output / MODEL_DIR)
        if self.resume:
            if not (checkpoint / TRAINER_FILE).exists():
                raise TrainingError(f"there is no checkpoint to resume from in {self.output}",
                                    hint="start a new run without --resume")
            saved = json.loads((checkpoint / TRAINER_FILE).read_text(encoding="utf-8"))
            differences = sorted(k for k in set(saved.get("run_info", {})) | set(self.run_info)
                                 if saved.get("run_info", {}).get(k) != self.run_info.get(k))
            if differences:
                raise TrainingError(f"{self.output} holds another run (it differs in: {', '.join(differences)})",
                                    hint="resume with the same data and model options, or train into a new "
                                         "--output directory")
        elif self.output.exists() and any(self.output.iterdir()) and not overwrite:
            raise TrainingError(f"output directory {self.output} is not empty",
                                hint="use --resume to go on with its run, --overwrite to replace it, or "
                                     "another --output")

    def _write_manifest(self) -> None:
        manifest = {"format": "mmtools-model", "format_version": 1, "kind": "training-run", "model": MODEL_DIR,
                    "mmtools_version": __version__, **self.manifest}
        with atomic_path(self.output / "mmtools.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # -- the loop
    def fit(self) -> TrainResult:
        import torch

        from mmtools.models.device import choose_device

        config = self.config
        device = config.device or choose_device(None)
        if self.dist.world_size > 1 and device.startswith("cuda"):
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(device)
        owns_group = _init_distributed(self.dist, device)
        try:
            return self._fit(device)
        finally:
            if owns_group:
                _end_distributed()

    def _fit(self, device: str) -> TrainResult:
        import torch

        config = self.config
        self.device = device
        self._seed(config.seed + self.dist.rank)
        # Weights that learn are kept in fp32 whatever the checkpoint was saved in (an fp16 base would go NaN
        # in a few steps, and on a CPU nothing would cast it back); mixed precision is autocast's job.
        model = self.task.model.to(device=device, dtype=torch.float32)
        state = self._load_checkpoint() if self.resume else None
        if self.dist.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            sweep_temporaries(self.output / MODEL_DIR)
            sweep_temporaries(self.output / CHECKPOINT_DIR)
            if not self.resume:
                (self.output / METRICS_FILE).unlink(missing_ok=True)
            self._write_manifest()
        result = TrainResult(self.output / MODEL_DIR)
        counters = {"epoch": 0, "stage": 0, "stage_epoch": 0, "best": None, "best_epoch": 0, "bad_epochs": 0,
                    "steps": 0, "best_metrics": {}}
        if state is not None:
            counters.update(state["counters"])
            model.load_state_dict(state["model"])
        writer = self._tensorboard()
        stages = config.all_stages()
        try:
            for stage_number in range(counters["stage"], len(stages)):
                stage = stages[stage_number]
                resuming_stage = state is not None and stage_number == counters["stage"]
                if not resuming_stage:
                    counters.update(stage=stage_number, stage_epoch=0, bad_epochs=0, plateau=False)
                ended = self._run_stage(model, stage, counters, state if resuming_stage else None, writer)
                state = None
                if ended == BUDGET_SPENT:
                    break
                # A plateau ends its stage only: the next one (e.g. the towers unfrozen) still runs.
                result.stopped_early = ended == PLATEAU
        except torch.cuda.OutOfMemoryError:
            raise TrainingError(f"out of GPU memory at batch size {config.batch_size}",
                                hint=_memory_hint(config, self.task)) from None
        finally:
            if writer is not None:
                writer.close()
        result.best_metrics = counters["best_metrics"]
        result.best_epoch = counters["best_epoch"]
        result.epochs_run = counters["epoch"]
        return result

    def _run_stage(self, model: Any, stage: Stage, counters: dict[str, Any], state: dict[str, Any] | None,
                   writer: Any) -> int:
        """Train one stage; how it ended: GO_ON (all its epochs), PLATEAU (early stopping) or BUDGET_SPENT."""
        import torch

        config = self.config
        groups = self.task.param_groups()
        names = {g["name"] for g in groups}
        trainable = names if stage.trainable is None else set(stage.trainable)
        unknown = trainable - names
        if unknown:
            raise UsageError(f"unknown parameter group(s) {', '.join(sorted(unknown))}; the model has "
                             f"{', '.join(sorted(names))}")
        for group in groups:
            for p in group["params"]:
                p.requires_grad_(group["name"] in trainable)
        wrapped = self._wrap(model)
        loader = self._loader(counters["epoch"])
        steps_per_epoch = max(1, math.ceil(len(loader) / config.grad_accum))
        total = steps_per_epoch * max(1, stage.epochs)
        optimizer, scheduler = self._optimizer(groups, trainable, stage, total)
        dtype = _autocast_dtype(config.precision, self.device)
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        while counters["stage_epoch"] < stage.epochs and not counters.get("plateau"):
            loader = self._loader(counters["epoch"])
            started = time.perf_counter()
            train_loss, samples = self._train_epoch(wrapped, loader, optimizer, scheduler, scaler, dtype, counters)
            seconds = time.perf_counter() - started
            counters["epoch"] += 1
            counters["stage_epoch"] += 1
            ended = self._end_epoch(model, optimizer, scheduler, scaler, counters, train_loss, samples, seconds,
                                    writer)
            if ended != GO_ON:
                return ended
        return PLATEAU if counters.get("plateau") else GO_ON

    def _train_epoch(self, model: Any, loader: Any, optimizer: Any, scheduler: Any, scaler: Any, dtype: Any,
                     counters: dict[str, Any]) -> tuple[float | None, int]:
        """One pass over the loader; the mean loss of the batches trained on (None: there were none)."""
        import torch

        config = self.config
        model.train()
        total_loss, batches, samples, pending = 0.0, 0, 0, 0
        bar = self.progress(f"epoch {counters['epoch'] + 1}", len(loader)) if (
            self.progress and self.dist.is_main) else None
        autocast = (torch.autocast(device_type="cuda", dtype=dtype) if dtype is not None
                    else contextlib.nullcontext())
        optimizer.zero_grad(set_to_none=True)
        try:
            for number, batch in enumerate(loader, 1):
                boundary = number % config.grad_accum == 0 or number == len(loader)
                # A batch whose examples all failed to load (already reported) is skipped by every rank
                # together: a rank that went on alone would wait for the others in the all-gather for ever.
                if self._all_ranks_have(batch is not None):
                    batch = move_to(batch, self.device)
                    sync = (contextlib.nullcontext() if boundary or not hasattr(model, "no_sync")
                            else model.no_sync())
                    with sync:
                        with autocast:
                            loss = self.task.loss(model, batch)
                        if not torch.isfinite(loss):
                            raise TrainingError(f"the loss became {loss.item()} at epoch {counters['epoch'] + 1}",
                                                hint=_non_finite_hint(dtype))
                        (scaler.scale(loss) if scaler else loss).backward()
                    total_loss += float(loss.detach())
                    batches += 1
                    pending += 1
                    samples += _batch_size(batch)
                elif boundary and pending and hasattr(model, "no_sync"):
                    _average_gradients_across_ranks(model)  # the window's last backward, which syncs, was skipped
                if boundary and pending:
                    self._step(model, optimizer, scheduler, scaler, pending)
                    pending = 0
                    counters["steps"] += 1
                if bar is not None:
                    bar(1)
                if config.max_steps is not None and counters["steps"] >= config.max_steps:
                    break
        finally:
            if bar is not None and hasattr(bar, "close"):
                bar.close()
        return (total_loss / batches if batches else None), samples

    def _all_ranks_have(self, have: bool) -> bool:
        """Whether every rank has a batch this step (one tiny all-reduce under DDP)."""
        if self.dist.world_size == 1:
            return have
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if have else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _step(self, model: Any, optimizer: Any, scheduler: Any, scaler: Any, batches: int) -> None:
        """One update from the gradients summed over ``batches`` batches: divided by the true count, so a
        last, shorter window (or one with a skipped batch) is an average like the others."""
        import torch

        if scaler is not None:
            scaler.unscale_(optimizer)
        if batches > 1:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    if parameter.grad is not None:
                        parameter.grad.div_(batches)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                           self.config.max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _end_epoch(self, model: Any, optimizer: Any, scheduler: Any, scaler: Any, counters: dict[str, Any],
                   train_loss: float | None, samples: int, seconds: float, writer: Any) -> int:
        import torch

        config = self.config
        ended = GO_ON
        if self.dist.is_main:
            model.eval()
            with torch.no_grad():
                evaluated = self.task.evaluate(model)
            metrics = {"epoch": counters["epoch"], "stage": counters["stage"] + 1,
                       "train_loss": None if train_loss is None else round(train_loss, 6),
                       **evaluated, "lr": optimizer.param_groups[0]["lr"],
                       "samples_per_s": round(samples * self.dist.world_size / max(seconds, 1e-9), 2),
                       "seconds": round(seconds, 3)}
            monitor = config.monitor if config.monitor in metrics else "train_loss"
            value = metrics[monitor]
            lower = _is_lower_better(monitor)
            best = counters["best"]
            improved = value is not None and (best is None or (value < best if lower else value > best))
            if improved:
                counters.update(best=float(value), best_epoch=counters["epoch"], bad_epochs=0,
                                best_metrics=metrics)
                with atomic_directory(self.output / MODEL_DIR) as tmp:
                    self.task.save(model, tmp)
            else:
                counters["bad_epochs"] += 1
            metrics["best"] = improved
            if config.max_steps is not None and counters["steps"] >= config.max_steps:
                ended = BUDGET_SPENT
            elif config.patience is not None and counters["bad_epochs"] >= config.patience:
                ended = PLATEAU
                counters["plateau"] = True  # saved with the checkpoint: a resumed run starts the next stage
            self._save_checkpoint(model, optimizer, scheduler, scaler, counters)
            self._log(metrics, writer)
        ended = self._agree(ended)
        counters["plateau"] = ended == PLATEAU
        return ended

    def _agree(self, ended: int) -> int:
        """Every rank ends the stage, or the run, when rank 0 decides to."""
        if self.dist.world_size == 1:
            return ended
        import torch
        import torch.distributed as dist

        flag = torch.tensor([ended], device=self.device)
        dist.broadcast(flag, src=0)
        return int(flag.item())

    # -- pieces
    def _wrap(self, model: Any) -> Any:
        if self.dist.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.dist.local_rank] if self.device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def _loader(self, epoch: int) -> Any:
        import torch
        from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

        config = self.config
        generator = torch.Generator()
        generator.manual_seed(config.seed + epoch)
        if self.dist.world_size > 1:
            sampler = DistributedSampler(self.dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                         shuffle=True, seed=config.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(self.dataset, generator=generator)
        # Contrastive losses want full batches; a last, tiny batch would also skew batch norm.
        drop_last = len(self.dataset) > config.batch_size * self.dist.world_size
        return DataLoader(self.dataset, batch_size=config.batch_size, sampler=sampler, drop_last=drop_last,
                          collate_fn=self.task.collate, num_workers=config.workers,
                          pin_memory=self.device.startswith("cuda"),
                          persistent_workers=False, worker_init_fn=_seed_worker if config.workers else None)

    def _optimizer(self, groups: list[dict[str, Any]], trainable: set[str], stage: Stage,
                   total_steps: int) -> tuple[Any, Any]:
        import torch

        config = self.config
        param_groups = []
        for group in groups:
            if group["name"] not in trainable:
                continue
            decay, plain = _decay_split([p for p in group["params"] if p.requires_grad])
            lr = group["lr"] * stage.lr_scale
            weight_decay = group.get("weight_decay", config.weight_decay)
            for params, wd in ((decay, weight_decay), (plain, 0.0)):
                if params:
                    param_groups.append({"params": params, "lr": lr, "weight_decay": wd, "name": group["name"]})
        if not param_groups:
            raise UsageError("nothing to train: every parameter group is frozen in this stage")
        optimizer = torch.optim.AdamW(param_groups, fused=self.device.startswith("cuda"))
        warmup_steps = int(config.warmup * total_steps)
        if config.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in param_groups], total_steps=max(1, total_steps),
                pct_start=min(0.5, max(config.warmup, 0.05)))
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: _schedule_factor(config.schedule, step, total_steps, warmup_steps))
        return optimizer, scheduler

    def _save_checkpoint(self, model: Any, optimizer: Any, scheduler: Any, scaler: Any,
                         counters: dict[str, Any]) -> None:
        import torch

        state = {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else {},
                 "counters": json.loads(json.dumps(counters, default=float))}
        trainer = {"format": "mmtools-checkpoint", "format_version": 1, "mmtools_version": __version__,
                   "run_id": self._run_id(), "epoch": counters["epoch"], "config": _config_dict(self.config),
                   "run_info": self.run_info, "saved_at": time.time()}
        with atomic_directory(self.output / CHECKPOINT_DIR) as tmp:
            torch.save(state, tmp / STATE_FILE)
            (tmp / TRAINER_FILE).write_text(json.dumps(trainer, indent=2, ensure_ascii=False), encoding="utf-8")

    def _run_id(self) -> str:
        if not hasattr(self, "_id"):
            previous = self.output / CHECKPOINT_DIR / TRAINER_FILE
            self._id = (json.loads(previous.read_text(encoding="utf-8")).get("run_id") if self.resume
                        and previous.exists() else uuid.uuid4().hex)
        return self._id

    def _load_checkpoint(self) -> dict[str, Any]:
        import torch

        path = self.output / CHECKPOINT_DIR / STATE_FILE
        try:
            # weights_only: a checkpoint is data, never code to unpickle
            return torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise TrainingError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})",
                                hint="start a new run with --overwrite") from None

    def _log(self, metrics: dict[str, Any], writer: Any) -> None:
        with open(self.output / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics, ensure_ascii=False) + "\n")
        if writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    writer.add_scalar(key, value, metrics["epoch"])
            writer.flush()
        if self.on_metrics:
            self.on_metrics(metrics)

    def _tensorboard(self) -> Any:
        if not self.log_dir or not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingDependencyError("--log-dir needs TensorBoard, which is not installed",
                                         hint="pip install tensorboard") from None
        return SummaryWriter(self.log_dir)

    @staticmethod
    def _seed(seed: int) -> None:
        import numpy as np
        import torch

        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    import numpy as np
    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _batch_size(batch: Any) -> int:
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict) or hasattr(batch, "keys"):
        for value in batch.values():
            size = _batch_size(value)
            if size:
                return size
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    return 0


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    values = asdict(config)
    values["stages"] = [dict(s, trainable=sorted(s["trainable"]) if s["trainable"] else None)
                        for s in values["stages"] or []]
    return values


def iterate_in_batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Evaluation helper: consecutive slices of ``items``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
