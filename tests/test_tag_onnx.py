"""A trained tagger on ONNX Runtime: the same probabilities as on PyTorch, no torch imported once exported, the
export checked, cached by the tagger's files, refused where it cannot hold, never left half-written."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmtools.tag.batches import Sample
from mmtools.tag.model import TaggerModel, TaggerSpec
from mmtools.tag.towers import load_towers, save_tagger, spec_for

pytestmark = pytest.mark.slow
LABELS = ["wifi", "mát", "đỏ", "xanh"]


def make_tagger(directory, *, base=None, tagging_data=None, modality="both", fusion="late", seed=0):
    import torch

    torch.manual_seed(seed)
    if base is not None:
        towers = load_towers(modality, base=str(base))
    else:
        towers = load_towers(modality, text_model=str(tagging_data["text_tower"]),
                             image_model=str(tagging_data["image_tower"]))
    spec = spec_for(towers, TaggerSpec(labels=LABELS, modality=modality, fusion=fusion, fusion_dim=16,
                                       hidden_dim=16, attention_heads=2, text_pooling="mean"))
    save_tagger(directory, TaggerModel(spec, towers.text_model, towers.image_model).eval(), towers,
                {"wifi": 0.3})
    return directory


def examples(tagger, photos):
    images = sorted(photos.glob("*.jpg"))[:3]
    texts = tagger.batches.prepare_texts(["Xe hơi màu đỏ", "con mèo nằm trên ghế", "phòng có wifi"])
    rows = [Sample(f"both-{i}", text=t, image=str(p)) for i, (t, p) in enumerate(zip(texts, images))]
    rows += [Sample("text-only", text=texts[0]), Sample("image-only", image=str(images[1]))]
    from mmtools.images import load_image

    for row in rows:
        if row.image is not None:
            row.image = load_image(row.image, draft_size=tagger.batches.image_size)
    spec = tagger.spec  # what examples_from_records lets through to each kind of tagger
    return [row for row in rows if spec.modality == "both" or (row.text if spec.modality == "text" else row.image)
            is not None]


@pytest.fixture(scope="module")
def siglip_base(tmp_path_factory):
    from mmtools.models.synthetic import build_random_model

    return build_random_model(tmp_path_factory.mktemp("base") / "siglip", "siglip-tiny")


@pytest.mark.parametrize("modality", ["both", "text", "image"])
def test_an_exported_tagger_gives_pytorchs_probabilities(siglip_base, tagging_data, photos, tmp_path, modality):
    from mmtools.tag.onnx_tagger import OnnxTagger
    from mmtools.tag.trained import TrainedTagger, load_tagger

    # SigLIP towers (fixed 64 tokens, no mask, pooler) for two towers; a PhoBERT-style text tower (segmented,
    # longest padding, mean pooling over the mask) and a ViT for one.
    directory = make_tagger(tmp_path / "tagger", base=siglip_base if modality == "both" else None,
                            tagging_data=tagging_data, modality=modality)
    onnx = load_tagger(str(directory), "cpu", "auto")
    torch_tagger = TrainedTagger(str(directory), "cpu")
    assert isinstance(onnx, OnnxTagger) and onnx.labels == LABELS and onnx.thresholds["wifi"] == 0.3
    assert onnx.export.meta["agreement"][modality if modality != "both" else "text"]["max_probability_difference"] \
        <= 1e-4
    got = onnx.probabilities(examples(onnx, photos))
    expected = torch_tagger.probabilities(examples(torch_tagger, photos))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.ptp(got) > 1e-3  # the records differ, so do their scores: not a constant stand-in


def test_the_cli_tags_alike_on_both_runtimes_and_a_cold_onnx_load_imports_no_torch(siglip_base, photos, tmp_path):
    directory = make_tagger(tmp_path / "tagger", base=siglip_base, seed=4)  # weights no other test exported
    records = tmp_path / "in.jsonl"
    with open(records, "w", encoding="utf-8") as out:
        for i, path in enumerate(sorted(photos.glob("*.jpg"))[:4]):
            out.write(json.dumps({"id": f"r{i}", "text": ["xe hơi", "con mèo", "bãi biển", "phở"][i],
                                  "path": str(path)}, ensure_ascii=False) + "\n")
        out.write(json.dumps({"id": "text-only", "text": "xe hơi", "path": None}) + "\n")
    tagged = {}
    for runtime in ("torch", "auto"):
        done = subprocess.run([sys.executable, "-m", "mmtools", "tag", "--model", str(directory), "--runtime",
                               runtime, "--threshold", "0", str(records)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        tagged[runtime] = [json.loads(line) for line in done.stdout.splitlines()]
        # The first ONNX run announces its export, once: where it goes.
        assert ("exporting tagger" in done.stderr and "onnx-taggers" in done.stderr) == (runtime == "auto")
    assert [r["id"] for r in tagged["auto"]] == ["r0", "r1", "r2", "r3", "text-only"]
    for a, b in zip(tagged["torch"], tagged["auto"]):
        assert a["tag_mode"] == b["tag_mode"] and [t["label"] for t in a["tags"]] == [t["label"] for t in b["tags"]]
        assert [t["score"] for t in a["tags"]] == pytest.approx([t["score"] for t in b["tags"]], abs=1e-4)
    # Exported once: a fresh process loads and runs it with neither torch nor transformers.
    probe = ("import sys; from mmtools.tag.trained import load_tagger; t = load_tagger(sys.argv[1], None, 'auto'); "
             "from mmtools.tag.batches import Sample; t.probabilities([Sample('a', text='xe')]); "
             "print(type(t).__name__, 'torch' in sys.modules, 'transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(directory)], capture_output=True, text=True)
    assert done.stdout.split() == ["OnnxTagger", "False", "False"], done.stderr


def test_fused_inside_the_network_taggers_and_the_torch_runtime_stay_on_pytorch(tagging_data, tmp_path):
    from mmtools.tag.onnx_export import exports_root
    from mmtools.tag.trained import TrainedTagger, load_tagger

    concat = make_tagger(tmp_path / "concat", tagging_data=tagging_data, fusion="concat")
    assert type(load_tagger(str(concat), "cpu", "auto")) is TrainedTagger
    late = make_tagger(tmp_path / "late", tagging_data=tagging_data)
    before = set(exports_root().glob("*")) if exports_root().exists() else set()
    assert type(load_tagger(str(late), "cpu", "torch")) is TrainedTagger
    assert (set(exports_root().glob("*")) if exports_root().exists() else set()) == before  # nothing exported


def test_a_refused_export_is_recorded_and_the_tagger_runs_on_pytorch(tagging_data, tmp_path, monkeypatch, caplog):
    import mmtools.tag.onnx_export as onnx_export
    from mmtools.tag.trained import TrainedTagger, load_tagger

    directory = make_tagger(tmp_path / "tagger", tagging_data=tagging_data, modality="text", seed=1)
    monkeypatch.setattr(onnx_export, "PROBABILITY_TOLERANCE", -1.0)  # nothing can agree
    with caplog.at_level("WARNING", logger="mmtools"):
        assert type(load_tagger(str(directory), "cpu", "auto")) is TrainedTagger
    assert "runs on PyTorch" in caplog.text and "disagrees with PyTorch" in caplog.text
    export = onnx_export.find_tagger_export(directory, json.loads((directory / "mmtools.json").read_text()))
    assert export.refused and not list(export.directory.glob("*.onnx"))  # only the record of why
    monkeypatch.setattr(onnx_export, "PROBABILITY_TOLERANCE", 1e-4)
    assert type(load_tagger(str(directory), "cpu", "auto")) is TrainedTagger  # the refusal is remembered


def test_a_killed_export_leaves_nothing_and_a_retrained_tagger_gets_its_own(tagging_data, tmp_path, monkeypatch):
    import mmtools.tag.onnx_export as onnx_export
    from mmtools.tag.onnx_tagger import OnnxTagger
    from mmtools.tag.trained import load_tagger

    directory = make_tagger(tmp_path / "tagger", tagging_data=tagging_data, modality="text", seed=2)
    manifest = json.loads((directory / "mmtools.json").read_text())
    real = onnx_export._branch_module

    def killed(*args):
        raise KeyboardInterrupt  # as if killed in the middle of writing the graphs

    monkeypatch.setattr(onnx_export, "_branch_module", killed)
    with pytest.raises(KeyboardInterrupt):
        load_tagger(str(directory), "cpu", "auto")
    key = onnx_export.tagger_key(directory, manifest)
    assert not (onnx_export.exports_root() / key).exists()
    monkeypatch.setattr(onnx_export, "_branch_module", real)
    first = load_tagger(str(directory), "cpu", "auto")
    assert isinstance(first, OnnxTagger) and first.export.directory.name == key
    make_tagger(directory, tagging_data=tagging_data, modality="text", seed=3)  # retrained in place
    second = load_tagger(str(directory), "cpu", "auto")
    assert isinstance(second, OnnxTagger) and second.export.directory != first.export.directory
