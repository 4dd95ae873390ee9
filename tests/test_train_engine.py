"""The training engine: it learns, stages freeze what they should, early stopping, checkpoints that resume
exactly, runs that do not match refused, and a kill -9 that leaves the last checkpoint and model usable."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine_task import train
from mmtools.train.engine import CHECKPOINT_DIR, METRICS_FILE, MODEL_DIR, Stage, TrainingError

HERE = Path(__file__).parent


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / MODEL_DIR / "model.safetensors"))


def test_it_learns_and_writes_the_run_layout(tmp_path):
    result, _ = train(tmp_path / "run", epochs=5)
    metrics = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3, 4, 5]
    assert result.best_metrics["accuracy"] > 0.9  # two well separated blobs: chance is 0.5
    manifest = json.loads((tmp_path / "run" / "mmtools.json").read_text())
    assert manifest["kind"] == "training-run" and manifest["model"] == MODEL_DIR
    assert (tmp_path / "run" / CHECKPOINT_DIR / "training_state.pt").exists()


def test_a_stage_trains_only_its_groups(tmp_path):
    _, task = train(tmp_path / "run", stages=[Stage(2, trainable={"head"})])
    torch.manual_seed(0)
    initial = torch.nn.Linear(4, 16)
    assert torch.equal(task.model[0].weight.detach(), initial.weight)  # body frozen
    assert not torch.equal(_weights(tmp_path / "run")["2.weight"], torch.nn.Linear(16, 2).weight)


def test_early_stopping(tmp_path):
    result, _ = train(tmp_path / "run", epochs=10, patience=2, constant_metric=True)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    train(tmp_path / "straight", epochs=4)

    def stop_after_two(metrics):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "resumed", epochs=4, on_metrics=stop_after_two)
    result, _ = train(tmp_path / "resumed", epochs=4, resume=True)
    assert result.epochs_run == 4
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.allclose(straight[k], resumed[k], atol=1e-6) for k in straight)
    lines = (tmp_path / "resumed" / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_runs_that_do_not_match_are_refused(tmp_path):
    train(tmp_path / "run", epochs=1)
    with pytest.raises(TrainingError, match="not empty"):
        train(tmp_path / "run", epochs=1)
    with pytest.raises(TrainingError, match="another run.*data"):
        train(tmp_path / "run", epochs=2, resume=True, run_info={"data": "other.jsonl"})
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(tmp_path / "fresh", epochs=1, resume=True)
    train(tmp_path / "run", epochs=1, overwrite=True)  # an explicit fresh start is allowed


def test_kill_9_leaves_the_last_checkpoint_and_the_model_usable(tmp_path):
    output = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent / "src")])}
    child = subprocess.Popen([sys.executable, str(HERE / "engine_task.py"), str(output)], env=env,
                             stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    state = torch.load(output / CHECKPOINT_DIR / "training_state.pt", weights_only=True)
    assert state["counters"]["epoch"] >= 3
    assert set(_weights(output)) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    leftovers = [p.name for p in output.iterdir() if p.name.startswith(".")]
    result, _ = train(output, epochs=50, resume=True, stages=[Stage(50)], run_info={"data": "blobs"})
    assert result.epochs_run == 50
    assert not [p for p in output.iterdir() if p.name.startswith(".") and p.name not in leftovers]


def test_a_run_directory_loads_its_model_through_the_registry(tmp_path):
    from mmtools.errors import ModelError
    from mmtools.models.registry import resolve_model

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mmtools.json").write_text(json.dumps(
        {"format": "mmtools-model", "kind": "training-run", "model": "model"}))
    with pytest.raises(ModelError, match="no model yet"):
        resolve_model(str(tmp_path / "run"))
    train(tmp_path / "run", epochs=1, overwrite=True)
    ref = resolve_model(str(tmp_path / "run"))
    assert ref.location == str((tmp_path / "run" / MODEL_DIR).resolve()) and ref.family == "test-blobs"


def test_the_cli_choices_are_the_engines():
    from mmtools.cli.common import Precision, Schedule
    from mmtools.train.engine import PRECISIONS, SCHEDULES

    assert tuple(s.value for s in Schedule) == SCHEDULES and tuple(p.value for p in Precision) == PRECISIONS


def test_a_plateau_in_the_frozen_stage_moves_on_to_the_next_stage(tmp_path):
    # Early stopping in stage 1 (a frozen body) must not end the run: the body would never learn.
    seen = []
    result, task = train(tmp_path / "run", patience=2, constant_metric=True, on_metrics=seen.append,
                         stages=[Stage(6, trainable={"head"}), Stage(6)])
    assert [m["stage"] for m in seen] == [1, 1, 1, 2, 2]  # 3 epochs of stage 1, then stage 2 until its plateau
    assert result.stopped_early and result.epochs_run == 5
    torch.manual_seed(0)
    assert not torch.equal(task.model[0].weight.detach(), torch.nn.Linear(4, 16).weight)  # the body learnt


def test_a_run_resumed_after_a_stage_plateau_starts_the_next_stage(tmp_path):
    def stop_after_three(metrics):
        if metrics["epoch"] == 3:
            raise KeyboardInterrupt

    stages = [Stage(6, trainable={"head"}), Stage(6)]
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "run", patience=2, constant_metric=True, stages=stages, on_metrics=stop_after_three)
    seen = []
    train(tmp_path / "run", patience=2, constant_metric=True, stages=stages, resume=True, on_metrics=seen.append)
    assert [m["stage"] for m in seen] == [2, 2]


class OnesTask:
    """loss = w * mean(x) with every x = 1: each batch's gradient is exactly 1."""

    def __init__(self):
        self.model = torch.nn.Linear(1, 1, bias=False)

    def param_groups(self):
        return [{"name": "w", "params": list(self.model.parameters()), "lr": 1e-3}]

    def collate(self, items):
        return torch.stack(items)

    def loss(self, model, batch):
        return model(batch).mean()

    def evaluate(self, model):
        return {}

    def save(self, model, directory):
        (directory / "mmtools.json").write_text("{}")


def test_accumulated_gradients_are_averaged_over_the_true_window(tmp_path):
    # 3 batches with --grad-accum 2: windows of 2 and 1; the short one is not divided by 2.
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from mmtools.train.engine import TrainConfig, Trainer

    seen = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(optimizer.param_groups[0]["params"][0].grad.item()))
    try:
        config = TrainConfig(epochs=1, batch_size=4, grad_accum=2, workers=0, patience=None, device="cpu",
                             max_grad_norm=None)
        Trainer(OnesTask(), [torch.ones(1)] * 12, config, tmp_path / "run").fit()
    finally:
        handle.remove()
    assert seen == [pytest.approx(1.0), pytest.approx(1.0)]
