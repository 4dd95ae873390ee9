"""A tiny model trained from scratch with `train captioner` on shapes (two questions a picture), then used
through real shell pipes: `ask` answers held-out pictures, `eval captioning` reports it beside its baselines,
and captions from `caption --prompt` are found by `search --mode keyword`."""

from __future__ import annotations

import json
import os
import subprocess

import orjson
import pytest

from test_e2e import BIN, shell

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # training runs in the first test
ONE_THREAD = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # tiny models: one thread beats two busy cores


def lines(text):
    return [orjson.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mmtools.caption.synthetic import shapes_vqa_data

    work = tmp_path_factory.mktemp("shapes")
    shapes_vqa_data(work, 400, seed=1, size=32, name="train")
    shapes_vqa_data(work, 40, seed=2, size=32, name="test")
    # About 300 optimiser steps: colour is learnt in a few dozen, shape takes the rest.
    command = ("mmtools train captioner -d train.jsonl --arch tiny --image-size 32 --patch-size 8 --hidden 64 "
               "--min-count 1 --epochs 12 --patience 4 -b 32 --lr 3e-3 --workers 0 -o run --metrics metrics.jsonl")
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **ONE_THREAD}
    result = subprocess.run(["bash", "-c", command], cwd=work, env=environment, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr
    return work


def test_the_trained_model_answers_held_out_pictures(trained):
    gold = lines((trained / "test.jsonl").read_text(encoding="utf-8"))
    asked = shell("mmtools ask -m run test.jsonl", trained, **ONE_THREAD)
    assert asked.returncode == 0, asked.stderr
    answers = lines(asked.stdout)
    assert [a["question"] for a in answers] == [g["question"] for g in gold]
    right = sum(a["answer"] == g["answer"] for a, g in zip(answers, gold))
    assert right / len(gold) >= 0.8, [(a["answer"], g["answer"]) for a, g in zip(answers, gold)][:10]
    # One question for all, and a model directory written as safetensors with its manifest.
    colour = shell('mmtools ask -m run --question "Hình này màu gì?" test/0000.png', trained, **ONE_THREAD)
    assert lines(colour.stdout)[0]["answer"].startswith("màu ")
    assert (trained / "run" / "model" / "model.safetensors").exists()


def test_eval_reports_accuracy_beside_the_untrained_model_and_the_answer_prior(trained):
    result = shell("mmtools eval captioning -d test.jsonl -m run", trained, **ONE_THREAD)
    assert result.returncode == 0, result.stderr
    rows = {row["baseline"]: row for row in lines(result.stdout)}
    assert set(rows) == {None, "untrained", "most-frequent"}
    assert rows[None]["questions"] == 80
    assert rows[None]["accuracy"] >= 0.8
    assert rows["untrained"]["accuracy"] < 0.2 and rows["most-frequent"]["accuracy"] < 0.5


def test_captions_are_found_by_keyword_search(trained, siglip_dir):
    """caption | embed-images | index, then search --mode keyword: the circles, by their captions (the model
    captions what it is prompted for: here, the shape)."""
    built = shell(f'mmtools caption -m run --prompt "Đây là hình gì?" test/ | mmtools embed-images -m {siglip_dir} '
                  "| mmtools index -o idx.faiss", trained, **ONE_THREAD)
    assert built.returncode == 0, built.stderr
    gold = {g["path"]: g["answer"] for g in lines((trained / "test.jsonl").read_text(encoding="utf-8"))
            if g["question"] == "Đây là hình gì?"}
    circles = {path for path, answer in gold.items() if answer == "hình tròn"}
    found = shell('mmtools search -i idx.faiss --mode keyword "hình tròn" -k 100', trained)
    assert found.returncode == 0, found.stderr
    hits = lines(found.stdout)
    assert hits and all("tròn" in hit["caption"] for hit in hits)
    paths = {hit["path"] for hit in hits}
    assert len(paths & circles) >= 0.8 * len(circles) and len(paths - circles) <= 0.2 * len(circles)
    unaccented = shell('mmtools search -i idx.faiss --mode keyword "hinh tron" -k 100', trained)
    assert {hit["path"] for hit in lines(unaccented.stdout)} == paths
    assert json.dumps(hits[0], ensure_ascii=False).count("caption") >= 1
