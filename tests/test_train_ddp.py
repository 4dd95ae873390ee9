"""Training under torchrun on the CPU (gloo, two processes): ranks agree to skip a batch that collates to
nothing on one of them, and only rank 0 names skipped inputs and prints the summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def run(args, cwd, timeout=180):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_ranks_agree_to_skip_a_batch_that_is_empty_on_one_of_them(tmp_path):
    done = run([str(HERE / "ddp_skip_task.py"), str(tmp_path / "run")], HERE)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = sorted(json.loads(line)["rank"] for line in done.stdout.splitlines() if line.startswith("{"))
    assert finished == ["0", "1"]


def test_truncated_images_are_named_once_with_one_summary(tmp_path, clip_dir):
    from PIL import Image

    from mmtools.train.demo import make_shapes

    data = make_shapes(tmp_path, 16, seed=0, name="train.jsonl")
    Image.new("RGB", (200, 150), "red").save(tmp_path / "whole.jpg", quality=95)
    lines = data.read_text(encoding="utf-8")
    for i in range(2):
        (tmp_path / "images" / f"cut{i}.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:300])
        lines += json.dumps({"id": f"cut{i}", "path": f"images/cut{i}.jpg", "caption": "ảnh hỏng"}) + "\n"
    data.write_text(lines, encoding="utf-8")
    mmtools = str(Path(sys.executable).parent / "mmtools")
    done = run([mmtools, "train", "retrieval", "-d", "train.jsonl", "--base", clip_dir, "-o", str(tmp_path / "run"),
                "--epochs", "1", "-b", "4", "--workers", "0"], tmp_path)
    ours = [line for line in done.stderr.splitlines() if line.startswith("mmtools train retrieval:")]
    assert done.returncode == 1, done.stderr[-3000:]  # skipped inputs, and only that
    for i in range(2):
        assert sum(f"cut{i}.jpg" in line for line in ours) == 1, ours
    assert sum("best epoch" in line for line in ours) == 1 and not any("None" in line for line in ours)
    assert sum("2 inputs were skipped" in line for line in ours) == 1
    assert "error" not in " ".join(ours)
    assert len([line for line in done.stdout.splitlines() if line.startswith("{")]) == 1  # one epoch, once
    assert (tmp_path / "run" / "model" / "mmtools.json").exists()
