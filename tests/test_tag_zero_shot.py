"""Zero-shot tagging on hand-built embeddings whose right answers are known."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mmtools.errors import Problem, UsageError
from mmtools.records import encode_vector
from mmtools.tag.labels import Thresholds, read_labels, read_thresholds, select_tags
from mmtools.tag.zero_shot import ZeroShotTagger, check_templates, tag_records
from mmtools.text.prepare import TextRules

LABELS = ["xe hơi", "con mèo", "bóng chày"]


class HandBuiltEncoder:
    """Text vectors are one-hot by the label a text mentions (plus a little template noise); no weights."""

    name = "hand-built"
    dim = 4
    device = "cpu"
    text_rules = TextRules(max_length=64)
    image_size = None

    def __init__(self, scale=10.0, bias=-5.0, fingerprint="fp-0123456789abcdef"):
        self._scale, self._bias, self.fingerprint = scale, bias, fingerprint
        self.encoded: list[str] = []

    def logit_scale_and_bias(self):
        return self._scale, self._bias

    def encode_texts(self, texts, on_truncated=None):
        self.encoded.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for i, label in enumerate(LABELS):
                if label in text:
                    out[row, i] = 1.0
            out[row, 3] = 0.1 * (len(text) % 3)  # templates differ a little
            out[row] /= np.linalg.norm(out[row]) or 1.0
        return out


def unit(i, other=None, weight=0.0):
    v = np.zeros(4, np.float32)
    v[i] = 1.0
    if other is not None:
        v[other] = weight
    return v / np.linalg.norm(v)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))


def embedding_record(rid, vector, model="hand-built", fingerprint="fp-0123456789abcdef", kind="image"):
    record = {"id": rid, "embedding": encode_vector(vector), "embedding_model": model, "embedding_kind": kind}
    if fingerprint:
        record["embedding_fingerprint"] = fingerprint
    return record


def test_image_embeddings_get_the_label_they_point_at_with_siglip_probabilities():
    tagger = ZeroShotTagger(HandBuiltEncoder(), LABELS, top_k=None)
    out = list(tag_records([embedding_record("a", unit(2)), embedding_record("b", unit(0, 1, 1.0))], tagger))
    assert [r["id"] for r in out] == ["a", "b"]
    first = out[0]["tags"]
    assert first[0]["label"] == "bóng chày"
    assert [t["score"] for t in first] == sorted((t["score"] for t in first), reverse=True)
    # cos with its own label ~0.99 after template noise: sigmoid(10 * 0.99 - 5) ~ 0.99; others sigmoid(-5).
    assert first[0]["score"] > 0.98 and first[1]["score"] < 0.01
    # Multi-label: an image equally close to two labels scores both high, independently (no softmax).
    second = {t["label"]: t["score"] for t in out[1]["tags"]}
    assert second["xe hơi"] > 0.5 and second["con mèo"] > 0.5 and second["bóng chày"] < 0.01


def test_clip_style_scores_are_a_softmax_over_labels():
    tagger = ZeroShotTagger(HandBuiltEncoder(scale=100.0, bias=None), LABELS, top_k=None)
    (out,) = tag_records([embedding_record("a", unit(1))], tagger)
    scores = [t["score"] for t in out["tags"]]
    assert out["tags"][0]["label"] == "con mèo"
    assert sum(scores) == pytest.approx(1.0, abs=1e-5) and scores[0] > 0.99


def test_text_records_use_the_text_field_and_a_softmax():
    tagger = ZeroShotTagger(HandBuiltEncoder(), LABELS, top_k=1)
    out = list(tag_records([{"id": "t", "text": "một con mèo trên ghế"}], tagger))
    assert out[0]["tags"][0]["label"] == "con mèo" and len(out[0]["tags"]) == 1
    assert out[0]["text"] == "một con mèo trên ghế"


def test_threshold_top_k_and_per_label_thresholds():
    labels = ["a", "b", "c"]
    scores = [0.2, 0.9, 0.5]
    assert [t["label"] for t in select_tags(labels, scores, Thresholds(), None)] == ["b", "c", "a"]
    assert [t["label"] for t in select_tags(labels, scores, Thresholds(0.4), None)] == ["b", "c"]
    assert [t["label"] for t in select_tags(labels, scores, Thresholds(0.4), 1)] == ["b"]
    per_label = Thresholds(0.4, {"b": 0.95, "a": 0.1})
    assert [t["label"] for t in select_tags(labels, scores, per_label, None)] == ["c", "a"]


def test_label_vectors_are_cached_per_model_labels_and_templates():
    encoder = HandBuiltEncoder()
    ZeroShotTagger(encoder, LABELS)
    first = len(encoder.encoded)
    assert first == len(LABELS) * 8  # the default ensemble: 5 Vietnamese + 3 English templates
    assert "một bức ảnh về xe hơi" in encoder.encoded and "a photo of bóng chày" in encoder.encoded
    ZeroShotTagger(encoder, LABELS)
    assert len(encoder.encoded) == first  # from the cache
    ZeroShotTagger(encoder, LABELS, templates=["ảnh {}"])
    assert len(encoder.encoded) == first + 3  # other templates: recomputed
    other = HandBuiltEncoder(fingerprint="fp-ffffffffffffffff")
    ZeroShotTagger(other, LABELS)
    assert len(other.encoded) == first  # another model: recomputed


def test_a_damaged_cache_entry_is_recomputed(tmp_path):
    encoder = HandBuiltEncoder()
    ZeroShotTagger(encoder, LABELS)
    for entry in (tmp_path / "cache" / "zero-shot").glob("*.npy"):
        entry.write_bytes(b"garbage")
    tagger = ZeroShotTagger(encoder, LABELS)
    assert tagger.label_vectors.shape == (3, 4)
    assert len(encoder.encoded) == 2 * len(LABELS) * 8


def test_embeddings_from_another_model_or_dimension_are_refused_one_by_one():
    tagger = ZeroShotTagger(HandBuiltEncoder(), LABELS)
    problems: list[Problem] = []
    records = [embedding_record("other-fp", unit(0), model="hand-built", fingerprint="fp-1111111111111111"),
               embedding_record("other-name", unit(0), model="google/siglip2-base", fingerprint=None),
               embedding_record("short", np.ones(3, np.float32)),
               {"id": "bad", "embedding": "not base64!"},
               {"id": "empty"},
               embedding_record("good", unit(0))]
    out = list(tag_records(records, tagger, on_problem=problems.append))
    assert [r["id"] for r in out] == ["good"]
    assert [p.source for p in problems] == ["other-fp", "other-name", "short", "bad", "empty"]
    assert "fp-1111111111111111" in problems[0].reason and "--model" in problems[0].reason
    assert "google/siglip2-base" in problems[1].reason
    assert "3 dimensions" in problems[2].reason


def test_labels_file_normalised_and_deduplicated(tmp_path, caplog):
    path = tmp_path / "labels.txt"
    # "hoà" (new style), "hòa" (old style) and an NFD "hòa" are one label; a plain duplicate too.
    path.write_text("hòa bình\nhoà bình\nho\u0300a bình\n# a comment\n\nxe hơi\nxe hơi\n  con   mèo \n",
                    encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="mmtools"):
        labels = read_labels(path)
    assert labels == ["hòa bình", "xe hơi", "con mèo"]
    assert sum("appears more than once" in r.getMessage() for r in caplog.records) == 3


@pytest.mark.parametrize("content", [None, "", "\n# only a comment\n  \n", b"\xff\xfe bad"])
def test_missing_empty_or_unreadable_labels_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "labels.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UsageError) as caught:
        read_labels(path)
    assert str(path) in caught.value.message


def test_threshold_files_json_or_lines_normalised_and_checked(tmp_path):
    lines = tmp_path / "t.txt"
    lines.write_text("bóng chày\t0.3\nxe hơi 0.7\n", encoding="utf-8")
    assert read_thresholds(lines, LABELS) == {"bóng chày": 0.3, "xe hơi": 0.7}
    js = tmp_path / "t.json"
    js.write_text('{"con me\u0300o": 0.2}', encoding="utf-8")
    assert read_thresholds(js, LABELS) == {"con mèo": 0.2}
    js.write_text('{"xe đạp": 0.2}', encoding="utf-8")
    with pytest.raises(UsageError, match="xe đạp"):
        read_thresholds(js, LABELS)
    lines.write_text("xe hơi 1.5\n")
    with pytest.raises(UsageError, match="outside"):
        read_thresholds(lines, LABELS)


def test_templates_need_one_placeholder():
    assert check_templates(["ảnh {}", "ảnh {}"]) == ["ảnh {}"]
    for bad in (["no placeholder"], ["{} và {}"], []):
        with pytest.raises(UsageError):
            check_templates(bad)


def test_real_families_expose_their_scale_and_bias(siglip_dir, clip_dir):
    from mmtools.models import load_encoder
    from mmtools.tag.zero_shot import SIGMOID, SOFTMAX, scoring_for

    # Scored through the default runtime (ONNX Runtime here); the reference values from the PyTorch model.
    siglip, clip = scoring_for(load_encoder(siglip_dir, "cpu")), scoring_for(load_encoder(clip_dir, "cpu"))
    siglip_encoder, clip_encoder = load_encoder(siglip_dir, "cpu", "torch"), load_encoder(clip_dir, "cpu", "torch")
    assert siglip.bias is not None and siglip.method("image") == SIGMOID and siglip.method("text") == SOFTMAX
    assert clip.bias is None and clip.method("image") == SOFTMAX
    # The model's own (exponentiated) scale and bias, whatever they are in this random model.
    assert siglip.scale == pytest.approx(float(siglip_encoder.model.logit_scale.detach().exp()))
    assert siglip.bias == pytest.approx(float(siglip_encoder.model.logit_bias.detach()))
    assert clip.scale == pytest.approx(float(clip_encoder.model.logit_scale.detach().exp()))


def test_a_tagger_is_refused_as_an_embedding_model(tagging_data, tmp_path):
    from mmtools.errors import ModelError
    from mmtools.models.cache import ModelCache
    from mmtools.tag.model import TaggerModel, TaggerSpec
    from mmtools.tag.towers import load_towers, save_tagger, spec_for

    towers = load_towers("text", text_model=str(tagging_data["text_tower"]))
    spec = spec_for(towers, TaggerSpec(labels=["a"], modality="text", fusion_dim=8, hidden_dim=8))
    save_tagger(tmp_path / "tagger", TaggerModel(spec, towers.text_model, None), towers, {})
    with pytest.raises(ModelError, match="is a tagger"):
        ModelCache().get(str(tmp_path / "tagger"), "cpu")


def test_a_failure_while_writing_the_cache_leaves_no_entry_and_no_temp_file(tmp_path, monkeypatch):
    def crash(handle, array, allow_pickle=False):
        handle.write(b"\x93NUMPY half")  # part of the file is written, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", crash)  # zero_shot imports numpy lazily: patch the module itself
    with pytest.raises(KeyboardInterrupt):
        ZeroShotTagger(HandBuiltEncoder(), LABELS)
    assert list((tmp_path / "cache" / "zero-shot").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))
    assert ZeroShotTagger(HandBuiltEncoder(), LABELS).label_vectors.shape == (3, 4)
    assert len(list((tmp_path / "cache" / "zero-shot").glob("*.npy"))) == 1
