"""A tiny classification task for exercising the training engine (also run in subprocesses by the tests)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from mmtools.train.engine import Stage, TrainConfig, Trainer


def blobs(n: int, seed: int) -> list[tuple[torch.Tensor, int]]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    centres = torch.tensor([[2.0, -1.0, 0.5, 1.0], [-2.0, 1.0, -0.5, -1.0]])
    points = centres[labels] + torch.randn(n, 4, generator=generator)
    return [(points[i], int(labels[i])) for i in range(n)]


class BlobTask:
    def __init__(self, val, delay: float = 0.0, constant_metric: bool = False):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.val = val
        self.delay = delay
        self.constant_metric = constant_metric

    def param_groups(self):
        return [{"name": "body", "params": list(self.model[0].parameters()), "lr": 1e-2},
                {"name": "head", "params": list(self.model[2].parameters()), "lr": 1e-2}]

    def collate(self, items):
        return {"x": torch.stack([x for x, _ in items]), "y": torch.tensor([y for _, y in items])}

    def loss(self, model, batch):
        if self.delay:
            time.sleep(self.delay)
        return torch.nn.functional.cross_entropy(model(batch["x"]), batch["y"])

    def evaluate(self, model):
        if self.constant_metric:
            return {"accuracy": 0.5}
        x = torch.stack([x for x, _ in self.val])
        y = torch.tensor([y for _, y in self.val])
        return {"accuracy": float((model(x).argmax(1) == y).float().mean())}

    def save(self, model, directory: Path):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "model.safetensors")
        (directory / "mmtools.json").write_text(json.dumps({"format": "mmtools-model", "family": "test-blobs"}))


def train(output, epochs=4, resume=False, overwrite=False, delay=0.0, on_metrics=None, run_info=None,
          stages=None, patience=None, constant_metric=False, monitor="accuracy"):
    task = BlobTask(blobs(100, 1), delay=delay, constant_metric=constant_metric)
    config = TrainConfig(epochs=epochs, batch_size=16, workers=0, patience=patience, monitor=monitor,
                         stages=stages, warmup=0.1, device="cpu")
    trainer = Trainer(task, blobs(200, 0), config, output, resume=resume, overwrite=overwrite,
                      on_metrics=on_metrics, run_info=run_info or {"data": "blobs"})
    return trainer.fit(), task


if __name__ == "__main__":  # python engine_task.py OUTPUT: a slow run that prints each finished epoch
    import sys

    train(sys.argv[1], epochs=50, delay=0.02, on_metrics=lambda m: print(m["epoch"], flush=True),
          stages=[Stage(50)])
