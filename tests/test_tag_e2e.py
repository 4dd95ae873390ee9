"""`mmtools tag`, `train tagger` and `eval tagging` through real shell pipes."""

from __future__ import annotations

import json

import orjson
import pytest

from test_e2e import shell

pytestmark = pytest.mark.slow


def lines(text):
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.fixture
def labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("xe hơi\ncon mèo\nbóng chày\nhoà bình\nhòa bình\n", encoding="utf-8")
    return path


def test_zero_shot_from_embeddings_equals_zero_shot_from_images(photos, siglip_dir, labels_file, tmp_path):
    env = {"MMTOOLS_MODEL": siglip_dir, "MMTOOLS_CACHE_DIR": str(tmp_path / "cache")}
    work = photos.parent
    piped = shell(f"mmtools embed-images photos/ | mmtools tag --labels {labels_file} --top-k 3", work, **env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr.count("appears more than once") == 1  # "hoà bình" and "hòa bình" are one label
    from_embeddings = lines(piped.stdout)
    assert len(from_embeddings) == 8
    for record in from_embeddings:
        assert "embedding" in record and len(record["tags"]) == 3  # the input record, plus its tags
        scores = [t["score"] for t in record["tags"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert {t["label"] for t in record["tags"]} <= {"xe hơi", "con mèo", "bóng chày", "hòa bình"}
    direct = shell(f"mmtools tag --labels {labels_file} --top-k 3 photos/", work, **env)
    assert direct.returncode == 0, direct.stderr
    by_id = {r["id"]: r["tags"] for r in lines(direct.stdout)}
    for record in from_embeddings:
        assert [t["label"] for t in by_id[record["id"]]] == [t["label"] for t in record["tags"]]
        for a, b in zip(by_id[record["id"]], record["tags"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    assert list((tmp_path / "cache" / "zero-shot").glob("*.npy"))  # label vectors cached


def test_zero_shot_refuses_embeddings_of_another_model(photos, siglip_dir, clip_dir, labels_file, tmp_path):
    result = shell(f"mmtools embed-images photos/nested --model {clip_dir} "
                   f"| mmtools tag --labels {labels_file} --model {siglip_dir}", photos.parent,
                   MMTOOLS_CACHE_DIR=str(tmp_path / "cache"))
    assert result.returncode == 1
    assert result.stdout == ""
    refused = [line for line in result.stderr.splitlines() if "not by" in line]
    assert len(refused) == 2 and all(line.startswith("mmtools tag: ") and "--model" in line for line in refused)


@pytest.mark.parametrize("content,message", [(None, "does not exist"), ("\n\n", "holds no labels")])
def test_a_missing_or_empty_label_file_is_a_usage_error(tmp_path, siglip_dir, content, message):
    labels = tmp_path / "labels.txt"
    if content is not None:
        labels.write_text(content)
    result = shell(f"echo '{{\"text\": \"xe\"}}' | mmtools tag --labels {labels} --model {siglip_dir}", tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def untrained_text_tagger(tagging_data, directory):
    from mmtools.tag.model import TaggerModel, TaggerSpec
    from mmtools.tag.towers import load_towers, save_tagger, spec_for

    towers = load_towers("text", text_model=str(tagging_data["text_tower"]))
    spec = spec_for(towers, TaggerSpec(labels=["wifi", "mát", "đỏ", "xanh"], modality="text", fusion_dim=32,
                                       hidden_dim=32))
    save_tagger(directory, TaggerModel(spec, towers.text_model, None), towers, {})


def test_train_tag_and_evaluate_through_the_cli(tagging_data, tmp_path):
    root = tagging_data["root"]
    common = (f"--data {tagging_data['train']} --val {tagging_data['val']} --text-model {tagging_data['text_tower']} "
              f"--image-model {tagging_data['image_tower']} --fusion-dim 32 --hidden-dim 32 --workers 0 "
              "--epochs 1 --finetune-epochs 2 --lr 1e-2 --text-lr 3e-3 --image-lr 3e-3 --finetune-lr-scale 1 "
              "--text-pooling mean -b 16")
    # The metrics come out as JSONL on stdout, through a pipe, as `train retrieval` writes them; messages on stderr.
    late = shell(f"mmtools train tagger {common} --modality both --fusion late -o {tmp_path / 'late'} | cat",
                 tmp_path, OMP_NUM_THREADS="1")
    assert late.returncode == 0, late.stderr
    *epochs, summary = lines(late.stdout)
    metrics = lines((tmp_path / "late" / "metrics.jsonl").read_text())
    assert epochs == metrics and [m["epoch"] for m in epochs] == [1, 2, 3]
    assert {"micro_f1", "macro_f1", "crossfit_micro_f1", "crossfit_macro_f1", "val_loss", "train_loss"} <= set(epochs[0])
    assert summary["summary"] == "train tagger" and summary["epochs_run"] == 3 and summary["val_examples"] == 48
    assert summary["thresholds_tuned_on"] == {"data": "validation", "examples": 48,
                                              "path": str(tagging_data["val"].resolve())}
    best = epochs[summary["best_epoch"] - 1]
    assert summary["validation_at_0.5"] == {"micro_f1": best["micro_f1"], "macro_f1": best["macro_f1"]}
    assert summary["validation_crossfit"]["micro_f1"] == best["crossfit_micro_f1"]
    assert "other half" in summary["validation_crossfit"]["how"]
    assert "{" not in late.stderr and "mmtools tag --model" in late.stderr and "cross-fitted" in late.stderr
    untrained_text_tagger(tagging_data, tmp_path / "text")  # a text-only tagger, made in-process (faster)
    manifest = json.loads((tmp_path / "late" / "model" / "mmtools.json").read_text())
    assert manifest["family"] == "mmtools-tagger" and set(manifest["thresholds"]) == {"wifi", "mát", "đỏ", "xanh"}

    # Tagging: records with text and an image path (relative to --root).
    tagged = shell(f"head -n 5 {tagging_data['test']} | mmtools tag --model {tmp_path / 'late'} --root {root}",
                   tmp_path)
    assert tagged.returncode == 0, tagged.stderr
    out = lines(tagged.stdout)
    assert len(out) == 5 and all(isinstance(r["tags"], list) and "text" in r for r in out)
    for record in out:
        assert all(t["label"] in manifest["thresholds"] and t["score"] >= manifest["thresholds"][t["label"]]
                   for t in record["tags"])

    # Wrong modality, nothing to tag, and a record that declares it has no image (late fusion can do that).
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"id": "img-only", "path": "images/test-0000.png"}\n{"id": "nothing"}\n'
                     '{"id": "declared", "text": "phòng có wifi", "path": null}\n'
                     '{"id": "undeclared", "text": "phòng có wifi"}\n', encoding="utf-8")
    text_only = shell(f"mmtools tag --model {tmp_path / 'text'} --root {root} < {mixed}", tmp_path)
    assert text_only.returncode == 1
    assert [r["id"] for r in lines(text_only.stdout)] == ["declared", "undeclared"]
    assert "img-only: record has an image but no text" in text_only.stderr
    both = shell(f"mmtools tag --model {tmp_path / 'late'} --root {root} < {mixed}", tmp_path)
    assert both.returncode == 1
    assert [r["id"] for r in lines(both.stdout)] == ["declared"]
    assert "undeclared: record has no image" in both.stderr and "set 'path' to null" in both.stderr
    assert len(both.stderr.strip().splitlines()) == 3

    # Evaluation side by side, with a label the models never saw, a per-label table and a plot.
    test = tmp_path / "test.jsonl"
    rows = tagging_data["test"].read_text(encoding="utf-8").splitlines()
    rows[0] = json.dumps(dict(json.loads(rows[0]), tags=["gần trường"]), ensure_ascii=False)
    test.write_text("\n".join(rows) + "\n", encoding="utf-8")
    (root / "test.jsonl").write_text(test.read_text(encoding="utf-8"), encoding="utf-8")  # images beside it
    evaluated = shell(f"mmtools eval tagging --data {root / 'test.jsonl'} -m {tmp_path / 'text'} "
                      f"-m {tmp_path / 'late'} --per-label --plot {tmp_path / 'f1.png'}", tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    reports = lines(evaluated.stdout)
    assert [r["model"] for r in reports] == [str(tmp_path / "text"), str(tmp_path / "late")]
    for report in reports:
        assert report["examples"] == 64 and report["unknown_labels"] == ["gần trường"]
        assert report["per_label"]["gần trường"]["f1"] == 0.0
        assert 0 <= report["micro"]["f1"] <= 1 and set(report["macro"]) == {"precision", "recall", "f1"}
    assert evaluated.stderr.count("not in its vocabulary") == 2
    assert reports[1]["thresholds"] == "the model's per-label thresholds" and not reports[1]["tuned_on_this_data"]
    assert reports[1]["tuned_on"]["path"] == str(tagging_data["val"].resolve())
    assert "flatter" not in evaluated.stderr
    # On the very data its thresholds were tuned on, the evaluation says so.
    own = shell(f"mmtools eval tagging --data {tagging_data['val']} -m {tmp_path / 'late'}", tmp_path)
    assert own.returncode == 0, own.stderr
    assert lines(own.stdout)[0]["tuned_on_this_data"] is True
    assert "were tuned on" in own.stderr and "flatter" in own.stderr
    fixed = shell(f"mmtools eval tagging --data {tagging_data['val']} -m {tmp_path / 'late'} --threshold 0.5",
                  tmp_path)
    assert lines(fixed.stdout)[0]["thresholds"] == "0.5 for every label" and "flatter" not in fixed.stderr
    assert (tmp_path / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_tagger_bad_inputs(tagging_data, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "tags": ["x"]}\nnot json\n{"id": "b", "text": "phòng", "tags": ["x"]}\n',
                    encoding="utf-8")
    no_tower = shell(f"mmtools train tagger --data {data} -o {tmp_path / 'out'} --modality image", tmp_path)
    assert no_tower.returncode == 2 and "--image-model" in no_tower.stderr
    nothing = shell(f"mmtools train tagger --data {data} -o {tmp_path / 'out'} --modality image "
                    f"--image-model {tagging_data['image_tower']} --workers 0", tmp_path)
    assert nothing.returncode == 3, nothing.stderr
    assert "no image" in nothing.stderr and "not valid JSON" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    missing = shell(f"mmtools train tagger --data {tmp_path / 'gone.jsonl'} -o {tmp_path / 'out'} "
                    f"--modality text --text-model {tagging_data['text_tower']}", tmp_path)
    assert missing.returncode == 3 and "does not exist" in missing.stderr


def test_a_killed_training_leaves_a_whole_tagger_and_resumes(tagging_data, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from mmtools.tag.trained import TrainedTagger

    output = tmp_path / "run"

    def args(finetune_epochs):
        return [str(Path(sys.executable).parent / "mmtools"), "train", "tagger", "--data",
                str(tagging_data["train"]), "--val", str(tagging_data["val"]), "--modality", "text", "--text-model",
                str(tagging_data["text_tower"]), "--fusion-dim", "16", "--hidden-dim", "16", "--workers", "0",
                "--epochs", "1", "--finetune-epochs", str(finetune_epochs), "--patience", "50", "-b", "8",
                "-o", str(output)]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(args(50), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = output / "metrics.jsonl"
    deadline = time.time() + 200
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in the next epoch, or in the middle of saving the model
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    tagger = TrainedTagger(str(output), "cpu")  # the best model so far is whole and loads
    assert sorted(tagger.labels) == sorted(["wifi", "mát", "đỏ", "xanh"])
    done = json.loads(metrics.read_text().splitlines()[-1])["epoch"]
    # Resume: the number of epochs may change (train longer); the data and the model may not.
    resumed = subprocess.run(args(done + 1) + ["--resume"], env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(metrics.read_text().splitlines()[-1])["epoch"] == done + 2
    other = subprocess.run(args(done + 1) + ["--resume", "--dropout", "0.5"], env=env, capture_output=True,
                           text=True, timeout=240)
    assert other.returncode == 3 and "another run" in other.stderr
