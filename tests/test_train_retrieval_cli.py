"""train retrieval / eval retrieval / search over several indexes through the real CLI: a trained model is
an ordinary model (embed-images, index, search), bad inputs are named, and a killed run leaves the last
checkpoint and the model directory whole."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import build_demo  # noqa: E402

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def shell(command, cwd, timeout=240, **env):
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "2", **env}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def cli(args, cwd, input=None):
    """The CLI in this process (no start-up cost): exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from mmtools.cli import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, args, input=input)
    finally:
        os.chdir(old)
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"), train=48, val=16, test=16)


def towers(demo):
    return f"--text-encoder {demo['text']} --image-encoder {demo['image']} --projection-dim 16"


def test_a_trained_model_is_an_ordinary_model(demo, tmp_path):
    work = demo["train"].parent
    trained = cli(["train", "retrieval", "-d", "train.jsonl", "--val", "val.jsonl", *towers(demo).split(),
                   "-o", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "16", "--workers", "0"], work)
    assert trained.exit_code == 0, trained.stderr
    epochs = [json.loads(line) for line in trained.stdout.splitlines()]  # metrics on stdout, one per epoch
    assert [m["epoch"] for m in epochs] == [1, 2] and "val_t2i_R@5" in epochs[0]
    assert "48 training images, 16 validation images" in trained.stderr
    manifest = json.loads((tmp_path / "run" / "model" / "mmtools.json").read_text())
    assert manifest["family"] == "two-tower" and manifest["projection_dim"] == 16
    assert manifest["text"]["segment"] is True and manifest["towers"]["image"]["type"] == "resnet"
    assert manifest["mmtools_version"]
    # Real pipes, real processes: the run directory is a model like any other.
    built = shell(f"mmtools embed-images test.jsonl -m {tmp_path}/run | mmtools index -o {tmp_path}/idx.faiss",
                  work)
    assert built.returncode == 0, built.stderr
    found = cli(["search", "hình tròn màu đỏ", "-i", str(tmp_path / "idx.faiss"), "-k", "3"], work)
    assert found.exit_code == 0, found.stderr
    hits = [orjson.loads(line) for line in found.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3] and all(h["path"].startswith("images/") for h in hits)
    evaluated = cli(["eval", "retrieval", "-d", "test.jsonl", "-m", str(tmp_path / "run"), "-m",
                     str(demo["clip"]), "--fuse"], work)
    assert evaluated.exit_code == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["images"] == 16 and report["texts"] == 32 and report["chance"]["R@5"] == 31.25
    assert [r["model"] for r in report["results"]][2] == "fusion(rrf)"


def test_eval_from_precomputed_embeddings_matches_eval_from_data(demo, tmp_path):
    work = demo["train"].parent
    model = str(demo["clip"])
    rows = [json.loads(line) for line in demo["test"].read_text().splitlines()]
    captions = "".join(json.dumps({"id": f"{r['id']}-{i}", "image_id": r["id"], "text": c}, ensure_ascii=False)
                       + "\n" for r in rows for i, c in enumerate(r["captions"]))
    # One runtime for both ways (fp32: ONNX Runtime's int8 image tower quantises a batch's activations with one
    # scale, so its vectors move a little with their batch-mates, and eval batches otherwise than embed-images).
    fp32 = ["--runtime", "onnx-fp32"]
    assert cli(["embed-images", "test.jsonl", "-m", model, *fp32, "-o", str(tmp_path / "images.jsonl")],
               work).exit_code == 0
    assert cli(["embed-texts", "-m", model, *fp32, "-o", str(tmp_path / "texts.jsonl")], work,
               input=captions).exit_code == 0
    direct = cli(["eval", "retrieval", "-d", "test.jsonl", "-m", model, *fp32], work)
    precomputed = cli(["eval", "retrieval", "--images", str(tmp_path / "images.jsonl"), "--texts",
                       str(tmp_path / "texts.jsonl"), "--plot", str(tmp_path / "recall.png")], work)
    assert direct.exit_code == 0 and precomputed.exit_code == 0, precomputed.stderr
    a, b = json.loads(direct.stdout)["results"][0], json.loads(precomputed.stdout)["results"][0]
    assert a["t2i"] == b["t2i"] and a["i2t"] == b["i2t"]
    assert (tmp_path / "recall.png").stat().st_size > 1000


def test_bad_training_data_is_named_and_skipped(demo, tmp_path):
    work = tmp_path
    images = demo["train"].parent / "images"
    Image.new("RGB", (40, 40), "red").save(work / "good.png")
    (work / "corrupt.png").write_bytes(b"not an image")
    rows = [{"path": str(p), "caption": "hình tròn đỏ"} for p in sorted(images.glob("train-*.png"))[:20]]
    rows += [{"path": "missing.png", "caption": "x"}, {"path": "corrupt.png", "caption": "hình vuông"},
             {"path": "good.png", "caption": "  "}]
    (work / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    train = ["train", "retrieval", "-d", "data.jsonl", "--workers", "0", "--epochs", "1", "-b", "8"]
    run = cli([*train, *towers(demo).split(), "-o", "run"], work)
    assert run.exit_code == 1, run.stderr  # trained, but some inputs were skipped
    assert "missing.png" in run.stderr and "corrupt.png" in run.stderr and "no caption" in run.stderr
    assert (work / "run" / "model" / "model.safetensors").exists()
    strict = cli([*train, *towers(demo).split(), "-o", "run2", "--strict"], work)
    assert strict.exit_code == 3 and "missing.png" in strict.stderr and not (work / "run2" / "model").exists()
    (work / "val.jsonl").write_text(json.dumps({"path": "corrupt.png", "caption": "x"}) + "\n")
    no_val = cli([*train, *towers(demo).split(), "--val", "val.jsonl", "-o", "run3"], work)
    assert no_val.exit_code == 3 and "validation data has no usable examples" in no_val.stderr
    not_dual = cli([*train, "--base", str(demo["text"]), "-o", "run4"], work)
    assert not_dual.exit_code == 3 and "dual encoders" in not_dual.stderr
    other_run = cli([*train, "--base", str(demo["clip"]), "-o", "run", "--resume"], work)
    assert other_run.exit_code == 3 and "another run" in other_run.stderr
    nothing = cli([*train, "-o", "run5"], work)
    assert nothing.exit_code == 2 and "no model to train" in nothing.stderr


def test_killing_training_leaves_the_last_checkpoint_and_model_whole(demo, tmp_path):
    work = demo["train"].parent
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    command = ["mmtools", "train", "retrieval", "-d", "train.jsonl", "--base", str(demo["clip"]), "-o",
               str(tmp_path / "run"), "--epochs", "200", "-b", "8", "--workers", "0", "--patience", "0",
               "--metrics", str(tmp_path / "metrics.jsonl")]
    child = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            lines = (tmp_path / "metrics.jsonl").read_text().splitlines() if (tmp_path / "metrics.jsonl").exists() else []
            if len(lines) >= 2:
                break
            time.sleep(0.2)
        time.sleep(0.3)  # somewhere inside the next epoch, or saving it
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    from mmtools.models import ModelCache

    encoder = ModelCache().get(str(tmp_path / "run"), "cpu")  # the model directory is whole and loads
    assert encoder.encode_texts(["hình tròn"]).shape[0] == 1
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer.json").read_text())
    assert state["epoch"] >= 2
    resumed = cli(["train", "retrieval", "-d", "train.jsonl", "--base", str(demo["clip"]), "-o",
                   str(tmp_path / "run"), "--epochs", str(state["epoch"] + 1), "-b", "8", "--workers", "0",
                   "--patience", "0", "--resume"], work)
    assert resumed.exit_code == 0, resumed.stderr
    assert [json.loads(line)["epoch"] for line in resumed.stdout.splitlines()] == [state["epoch"] + 1]


def test_search_fuses_several_indexes(demo, tmp_path):
    work = demo["train"].parent
    model = str(demo["clip"])
    for name in ("a", "b"):
        assert cli(["embed-images", "test.jsonl", "-m", model, "-o", str(tmp_path / f"{name}.jsonl")],
                   work).exit_code == 0
        assert cli(["index", str(tmp_path / f"{name}.jsonl"), "-o", str(tmp_path / f"{name}.faiss")],
                   work).exit_code == 0
    # Each index is searched in the mode asked for (the default would be hybrid: these records have captions).
    fused = cli(["search", "hình tròn", "-i", str(tmp_path / "a.faiss"), "-i", str(tmp_path / "b.faiss"), "-k", "5",
                 "--mode", "vector"], work)
    assert fused.exit_code == 0, fused.stderr
    hits = [orjson.loads(line) for line in fused.stdout.splitlines()]
    single = [orjson.loads(line) for line in
              cli(["search", "hình tròn", "-i", str(tmp_path / "a.faiss"), "-k", "5", "--mode", "vector"],
                  work).stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5] and len({h["id"] for h in hits}) == 5
    assert [h["id"] for h in hits] == [h["id"] for h in single]  # two copies of one model: the same order
    assert [m["rank"] for m in hits[0]["fused"]] == [1, 1]
    weighted = cli(["search", "hình tròn", "-i", str(tmp_path / "a.faiss"), "-i", str(tmp_path / "b.faiss"),
                    "--weights", "1"], work)
    assert weighted.exit_code == 2 and "one weight per model" in weighted.stderr
