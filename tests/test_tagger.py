"""The trained tagger: per-sample attention, saving and loading, modality checks, metrics, and learning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmtools.errors import Problem
from mmtools.tag.batches import BatchMaker, Sample
from mmtools.tag.metrics import tagging_report, tune_thresholds
from mmtools.tag.model import TaggerModel, TaggerSpec
from mmtools.tag.towers import load_towers, spec_for

LABELS = ["wifi", "mát", "đỏ", "xanh"]


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def network(tagging_data, fusion="attention", modality="both", modality_dropout=0.0):
    towers = load_towers(modality, text_model=str(tagging_data["text_tower"]),
                         image_model=str(tagging_data["image_tower"]))
    spec = spec_for(towers, TaggerSpec(labels=LABELS, modality=modality, fusion=fusion, fusion_dim=32,
                                       hidden_dim=32, attention_heads=2, modality_dropout=modality_dropout))
    return TaggerModel(spec, towers.text_model, towers.image_model).eval(), towers


def samples(tagging_data, batches, rows):
    root = tagging_data["root"]
    prepared = batches.prepare_texts([r["text"] for r in rows])
    return [Sample(r["id"], text=t, image=str(root / r["path"])) for r, t in zip(rows, prepared)]


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["attention", "concat", "late"])
def test_a_samples_output_does_not_depend_on_its_batch_mates(tagging_data, fusion):
    import torch

    model, towers = network(tagging_data, fusion)
    batches = BatchMaker(towers)
    rows = records(tagging_data["train"])
    alone = samples(tagging_data, batches, rows[:1])
    first_mates = samples(tagging_data, batches, rows[:1] + rows[1:6])
    other_mates = samples(tagging_data, batches, rows[:1] + rows[20:23])
    # Batch-mates with much longer texts change the padding of the whole batch too.
    long_mate = samples(tagging_data, batches, rows[:1] + [dict(rows[30], text=" ".join([rows[30]["text"]] * 6))])
    with torch.no_grad():
        outputs = [model(batches(group))["logits"][0] for group in (alone, first_mates, other_mates, long_mate)]
    for output in outputs[1:]:
        assert torch.allclose(outputs[0], output, atol=1e-5)
    # ...while the sample itself matters (the test would pass trivially for a constant network).
    with torch.no_grad():
        different = model(batches(samples(tagging_data, batches, rows[5:6])))["logits"][0]
    assert not torch.allclose(outputs[0], different, atol=1e-4)


@pytest.mark.slow
def test_attention_is_computed_within_each_sample(tagging_data):
    """Swapping the images of two samples changes those two samples' outputs, and only theirs."""
    import torch

    model, towers = network(tagging_data, "attention")
    batches = BatchMaker(towers)
    group = samples(tagging_data, batches, records(tagging_data["train"])[:4])
    swapped = [group[0], group[1], Sample(group[2].id, group[2].text, group[3].image),
               Sample(group[3].id, group[3].text, group[2].image)]
    with torch.no_grad():
        a, b = model(batches(group))["logits"], model(batches(swapped))["logits"]
    assert torch.allclose(a[:2], b[:2], atol=1e-5)
    assert not torch.allclose(a[2:], b[2:], atol=1e-4)


@pytest.mark.slow
def test_saved_tagger_loads_offline_and_gives_the_same_scores(tagging_data, tmp_path):
    import torch

    from mmtools.models.registry import read_manifest
    from mmtools.tag.towers import save_tagger
    from mmtools.tag.trained import TrainedTagger

    model, towers = network(tagging_data, "attention")
    save_tagger(tmp_path / "tagger", model, towers, {"wifi": 0.3, "mát": 0.6})
    manifest = read_manifest(tmp_path / "tagger")
    assert manifest["family"] == "mmtools-tagger" and manifest["tagger"]["labels"] == LABELS
    assert manifest["thresholds"] == {"wifi": 0.3, "mát": 0.6, "đỏ": 0.5, "xanh": 0.5}
    assert manifest["text"]["segment"] is True  # a PhoBERT-style tower keeps PhoBERT's convention
    assert (tmp_path / "tagger" / "model.safetensors").exists()
    loaded = TrainedTagger(str(tmp_path / "tagger"), "cpu")
    rows = records(tagging_data["val"])[:5]
    batches = BatchMaker(towers)
    with torch.no_grad():
        expected = torch.sigmoid(model(batches(samples(tagging_data, batches, rows)))["logits"]).numpy()
    got = loaded.probabilities(samples(tagging_data, loaded.batches, rows))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert loaded.thresholds["wifi"] == 0.3


@pytest.mark.slow
def test_a_damaged_tagger_directory_is_a_clear_error(tagging_data, tmp_path):
    from mmtools.errors import ModelError
    from mmtools.tag.towers import save_tagger
    from mmtools.tag.trained import TrainedTagger

    model, towers = network(tagging_data, "concat")
    save_tagger(tmp_path / "tagger", model, towers, {})
    weights = tmp_path / "tagger" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match="cannot be loaded"):
        TrainedTagger(str(tmp_path / "tagger"), "cpu")
    with pytest.raises(ModelError, match="not a tagger"):
        TrainedTagger(str(tagging_data["text_tower"]), "cpu")


def spec(modality, fusion="concat", modality_dropout=0.0):
    return TaggerSpec(labels=LABELS, modality=modality, fusion=fusion, modality_dropout=modality_dropout)


@pytest.mark.parametrize("modality,fusion,record,problem", [
    ("text", "concat", {"text": "phòng có wifi"}, None),
    ("text", "concat", {"path": "a.jpg"}, "has an image but no text"),
    ("image", "concat", {"text": "phòng có wifi"}, "has text but no image"),
    ("both", "concat", {}, "no text"),
    ("both", "concat", {"text": "x"}, "no image"),
    ("both", "concat", {"text": "x", "path": None}, "no image"),  # concat cannot do without one
    ("both", "late", {"text": "x"}, "set 'path' to null"),  # late can, if the record says so...
    ("both", "late", {"text": "x", "path": None}, None),  # ...like this
    ("both", "late", {"text": None, "path": "a.jpg"}, None),
    ("both", "attention", {"text": "x", "path": "a.jpg"}, None),
    ("both", "concat+", {"text": "x"}, None),  # fused with stand-ins for a missing modality: what there is
    ("both", "attention+", {"path": "a.jpg"}, None),
    ("both", "concat+", {"text": None, "path": None}, "no text"),
])
def test_which_records_a_tagger_can_read(modality, fusion, record, problem):
    from mmtools.tag.trained import missing_modality, record_input

    dropout = 0.3 if fusion.endswith("+") else 0.0
    reason = missing_modality(spec(modality, fusion.rstrip("+"), dropout), record_input(record, ["text"]),
                              ["text"])
    if problem is None:
        assert reason is None
    else:
        assert reason is not None and problem in reason


@pytest.mark.parametrize("modality,fusion,readable", [("image", "concat", True), ("both", "late", True),
                                                     ("both", "concat", False)])
def test_image_files_and_folders_are_tagged_by_taggers_that_read_images_alone(photos, modality, fusion, readable):
    # `mmtools tag --model TAGGER photos/`: a file has no text by construction (a JSONL record must say so).
    from mmtools.tag.inputs import records_from_inputs
    from mmtools.tag.trained import missing_modality, record_input

    records = list(records_from_inputs([str(photos)]))
    assert len(records) == 8
    reasons = [missing_modality(spec(modality, fusion), record_input(r, ["text"]), ["text"]) for r in records]
    assert all((reason is None) == readable for reason in reasons)
    assert missing_modality(spec("both", "late"), record_input(dict(records[0]), ["text"]), ["text"]) is not None


def test_a_fused_tagger_without_stand_ins_says_how_to_get_one():
    from mmtools.tag.trained import missing_modality, record_input

    reason = missing_modality(spec("both", "concat"), record_input({"text": "x"}, ["text"]), ["text"])
    assert "together" in reason and "--modality-dropout" in reason


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_a_missing_modality_is_stood_in_for_by_a_learned_embedding(tagging_data, fusion):
    """Rows without an image read the learned stand-in: the same output alone or beside rows with images,
    the same as the batch with images withheld, and not the output with the image."""
    import torch

    from mmtools.tag.batches import withheld

    model, towers = network(tagging_data, fusion, modality_dropout=0.3)
    assert model.spec.learns_missing and model.spec.allows_one_modality
    with torch.no_grad():  # stand-ins away from zero, as training leaves them
        model.missing_text.normal_()
        model.missing_image.normal_()
    batches = BatchMaker(towers)
    rows = records(tagging_data["train"])[:4]
    full = samples(tagging_data, batches, rows)
    no_image = [Sample(s.id, s.text, None) for s in full]
    no_text = [Sample(s.id, None, s.image) for s in full]
    mixed = [full[0], no_image[1], no_text[2], full[3]]
    with torch.no_grad():
        with_both = model(batches(full))["logits"]
        text_alone = model(batches(no_image))["logits"]
        image_alone = model(batches(no_text))["logits"]
        together = model(batches(mixed))["logits"]
        via_withheld = model(withheld(batches(full), "image"))["logits"]
        one_text_row = model(batches(no_image[1:2]))["logits"]
    assert torch.allclose(text_alone, via_withheld, atol=1e-5)
    assert torch.allclose(together[1], text_alone[1], atol=1e-5)
    assert torch.allclose(together[2], image_alone[2], atol=1e-5)
    assert torch.allclose(together[0], with_both[0], atol=1e-5)
    assert torch.allclose(one_text_row[0], text_alone[1], atol=1e-5)
    assert not torch.allclose(text_alone, with_both, atol=1e-4)
    # In training a share of the rows is withheld at random: the stand-ins receive gradients.
    model.train()
    torch.manual_seed(0)
    model(batches(full * 4))["logits"].sum().backward()
    assert model.missing_text.grad is not None and model.missing_text.grad.abs().sum() > 0
    assert model.missing_image.grad is not None and model.missing_image.grad.abs().sum() > 0


def test_metrics_on_known_answers():
    gold = [["a", "b"], ["a"], ["c"], []]
    predicted = [["a"], ["a", "b"], ["c"], ["c"]]
    report = tagging_report(gold, predicted)
    # a: tp 2; b: fp 1, fn 1; c: tp 1, fp 1.  micro: tp 3, fp 2, fn 1.
    assert report["micro"] == {"precision": 0.6, "recall": 0.75, "f1": round(2 * 0.6 * 0.75 / 1.35, 4)}
    assert report["per_label"]["b"]["f1"] == 0.0 and report["per_label"]["a"]["f1"] == 1.0
    assert report["per_label"]["c"] == {"precision": 0.5, "recall": 1.0, "f1": round(2 / 3, 4), "support": 1,
                                        "predicted": 2}
    assert report["macro"]["f1"] == round((1.0 + 0.0 + 2 / 3) / 3, 4)


def test_thresholds_are_tuned_per_label():
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probabilities = np.array([[0.3, 0.9], [0.25, 0.8], [0.1, 0.95], [0.05, 0.85]])
    low, high = tune_thresholds(targets, probabilities, min_positives=1)
    assert 0.1 < low <= 0.25  # the positives score 0.25 and 0.3, the negatives at most 0.1
    assert 0.85 < high <= 0.95
    assert tune_thresholds(np.zeros((2, 1)), np.array([[0.2], [0.7]])) == [0.5]  # no positive: default
    # Too few positives to trust (the default minimum is 5): the label keeps the default.
    assert tune_thresholds(targets, probabilities) == [0.5, 0.5]


def test_csv_in_the_designs_layout(tmp_path):
    from mmtools.tag.data import read_tagging_examples

    (tmp_path / "img").mkdir()
    path = tmp_path / "rooms.csv"
    path.write_text("mota,dacdiem,image_path\n"
                    '"Phòng mát, có điều hoà","mát, điều hòa, wifi",img/a.jpg\n'
                    '"Gần trường","gần trường",\n', encoding="utf-8")
    first, second = read_tagging_examples(path)
    assert first.texts == ["Phòng mát, có điều hoà"] and first.image == str(tmp_path / "img" / "a.jpg")
    assert first.tags == ["mát", "điều hòa", "wifi"]  # normalised: "điều hoà" and "điều hòa" are one label
    assert second.image is None and second.tags == ["gần trường"]


@pytest.mark.slow
def test_the_fused_tagger_beats_each_single_modality_on_held_out_data(tagging_data, tmp_path):
    """Text decides two tags, images the other two: only a tagger that reads both can get all four; and one
    trained with modality dropout still tags listings without photos as well as a text-only tagger."""
    import dataclasses

    import torch

    from mmtools.tag.data import read_tagging_examples
    from mmtools.tag.evaluate import evaluate_tagger
    from mmtools.tag.trained import TrainedTagger
    from mmtools.tag.training import TaggerOptions, TaggerTask, train_tagger
    from mmtools.train.engine import TrainConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two contending ones
    train, val, test = (read_tagging_examples(tagging_data[k]) for k in ("train", "val", "test"))
    scores, modes = {}, {}
    for modality, fusion in (("text", "concat"), ("image", "concat"), ("both", "concat"),
                             ("both", "attention")):
        options = TaggerOptions(modality=modality, fusion=fusion, text_model=str(tagging_data["text_tower"]),
                                image_model=str(tagging_data["image_tower"]), fusion_dim=32, hidden_dim=32,
                                dropout=0.1, text_pooling="mean", head_lr=1e-2, text_lr=3e-3, image_lr=3e-3,
                                frozen_epochs=2, finetune_epochs=9 if modality == "both" else 5,
                                finetune_lr_scale=1.0)
        task = TaggerTask(options, train, val, batch_size=16)
        config = TrainConfig(batch_size=16, workers=0, patience=None, monitor="micro_f1", warmup=0.0)
        output = tmp_path / f"{modality}-{fusion}"
        train_tagger(task, config, output)
        report = evaluate_tagger(TrainedTagger(str(output), "cpu"), test)
        scores[(modality, fusion)] = report["micro"]["f1"]
        if modality == "text":  # the text-decided tags are learnt from text alone
            assert min(report["per_label"][t]["f1"] for t in ("wifi", "mát")) > 0.9, report
        if modality == "image":
            assert min(report["per_label"][t]["f1"] for t in ("đỏ", "xanh")) > 0.9, report
        if modality == "both":  # trained with modality dropout: also read without photos, or without text
            without_photos = [dataclasses.replace(e, image=None) for e in test]
            scores[(modality, fusion, "no photos")] = evaluate_tagger(TrainedTagger(str(output), "cpu"),
                                                                      without_photos)["micro"]["f1"]
            modes[fusion] = report["modes"]
    torch.set_num_threads(threads)
    print("held-out micro-F1:", scores, modes)
    best_single = max(scores[("text", "concat")], scores[("image", "concat")])
    assert scores[("both", "concat")] > best_single + 0.05, scores
    assert scores[("both", "attention")] > best_single + 0.05, scores
    assert scores[("both", "concat")] > 0.9, scores
    # A listing without a photo: the fused tagger does as well as a tagger trained on text alone.
    for fusion in ("concat", "attention"):
        assert scores[("both", fusion, "no photos")] >= scores[("text", "concat")] - 0.03, scores
        assert modes[fusion]["text-only"]["micro"]["f1"] == scores[("both", fusion, "no photos")]
        assert modes[fusion]["multimodal"]["micro"]["f1"] == scores[("both", fusion)]
        assert modes[fusion]["image-only"]["micro"]["f1"] >= scores[("image", "concat")] - 0.03, modes


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["siglip-tiny", "clip-tiny", "phobert-tiny"])
def test_both_towers_of_a_dual_encoder_with_base(tmp_path, architecture, photos):
    import torch

    from mmtools.models.synthetic import build_random_model
    from mmtools.tag.towers import save_tagger
    from mmtools.tag.trained import TrainedTagger

    base = build_random_model(tmp_path / architecture, architecture)
    towers = load_towers("both", base=str(base))
    spec = spec_for(towers, TaggerSpec(labels=LABELS, fusion="attention", fusion_dim=16, hidden_dim=16,
                                       attention_heads=2))
    if architecture == "siglip-tiny":  # SigLIP's text rules and its no-mask text tower come along
        assert towers.text_rules.lowercase and towers.text_rules.padding == "max_length"
        assert spec.text_uses_mask is False and spec.text_pooling == "pooler"
    if architecture == "phobert-tiny":
        assert towers.text_rules.segment and spec.text_pooling == "first"
    model = TaggerModel(spec, towers.text_model, towers.image_model).eval()
    image = str(sorted(photos.glob("*.jpg"))[0])
    save_tagger(tmp_path / "tagger", model, towers, {})
    loaded = TrainedTagger(str(tmp_path / "tagger"), "cpu")
    rows = [Sample("a", text=t, image=image) for t in loaded.batches.prepare_texts(["xe hơi màu đỏ", "con mèo"])]
    probabilities = loaded.probabilities(rows)
    assert probabilities.shape == (2, 4) and np.isfinite(probabilities).all()
    with torch.no_grad():
        direct = torch.sigmoid(model(BatchMaker(towers)(rows))["logits"]).numpy()
    np.testing.assert_allclose(probabilities, direct, atol=1e-5)
    # The towers keep the dual encoder's trained weights.
    from transformers import AutoModel

    dual = AutoModel.from_pretrained(base)
    first = next(iter(dual.vision_model.state_dict().values()))
    assert any(torch.equal(first, value) for value in towers.image_model.state_dict().values())


def test_side_by_side_table_for_a_terminal():
    from mmtools.cli.tagger import _table

    def result(name, f1):
        scores = {"precision": f1, "recall": f1, "f1": f1}
        return {"model": name, "reads": "text only", "examples": 10, "micro": scores, "macro": scores,
                "per_label": {"wifi": {**scores, "support": 4}}}

    tuned = {"thresholds": "the model's per-label thresholds",
             "tuned_on": {"data": "validation", "examples": 48, "path": "/data/val.jsonl"}, "tuned_on_this_data": True}
    plain = {"thresholds": "0.5 for every label", "tuned_on": None, "tuned_on_this_data": False}
    fused = result("fused", 0.91)
    fused["per_label"]["rare"] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    fused["modes"] = {mode: {"examples": 10, "micro": figures, "macro": figures} for mode, figures in
                      (("multimodal", fused["micro"]), ("text-only", result("x", 0.6)["micro"]),
                       ("image-only", result("x", 0.4)["micro"]))}
    table = _table([{**result("text-tagger", 0.5), **tuned}, {**fused, **plain}], per_label=True).splitlines()
    assert table[0].split()[:2] == ["model", "reads"] and "micro F1" in table[0]
    assert table[1].startswith("text-tagger") and table[1].endswith("0.5000")
    assert table[2].startswith("fused") and "0.9100" in table[2]
    # The fused tagger's figures with both modalities and with each alone, side by side.
    assert table[3].split()[0] == "multimodal" and table[3].endswith("0.9100")
    assert table[4].split()[0] == "text-only" and table[4].endswith("0.6000")
    assert table[5].split()[0] == "image-only" and table[5].endswith("0.4000")
    assert table[6] == ("text-tagger: the model's per-label thresholds, tuned on /data/val.jsonl (48 examples) "
                        "(this data: the figures flatter the model)")
    assert table[7] == "fused: 0.5 for every label"
    assert table[9].split() == ["label", "support", "F1", "text-tagger", "F1", "fused"]
    assert table[10].split() == ["rare", "0", "-", "no", "examples"]
    assert table[11].split() == ["wifi", "4", "0.5000", "0.9100"]
