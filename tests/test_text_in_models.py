"""Each model family gets the text it needs, inside embed-texts and search."""

import json
import shutil
import unicodedata

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.models import ModelCache
from mmtools.records import decode_vector


@pytest.fixture(scope="module")
def phobert_dir(tmp_path_factory):
    from mmtools.models.synthetic import build_random_model

    return str(build_random_model(tmp_path_factory.mktemp("models") / "phobert", "phobert-tiny"))


def test_phobert_models_declare_segmentation_and_256_tokens(phobert_dir):
    rules = ModelCache().get(phobert_dir, "cpu").text_rules
    assert (rules.segment, rules.max_length, rules.normalize) == (True, 256, True)


def test_phobert_text_is_word_segmented_before_tokenising(phobert_dir):
    encoder = ModelCache().get(phobert_dir, "cpu", "torch")  # its tokenizer is a PyTorch encoder's part
    assert encoder.tokenizer.tokenize("xe hơi") == ["xe", "hơi"]  # unsegmented: two tokens
    assert encoder.tokenizer.tokenize("xe_hơi") == ["xe_hơi"]
    raw, segmented = encoder.encode_texts(["Xe hơi màu đỏ", "Xe_hơi màu đỏ"])
    assert np.allclose(raw, segmented, atol=1e-6)


def test_embed_texts_segments_for_phobert_models(phobert_dir):
    result = CliRunner().invoke(app, ["embed-texts", "--lines", "--model", phobert_dir],
                                input="xe hơi màu đỏ\nxe_hơi màu đỏ\n")
    assert result.exit_code == 0, result.stderr
    first, second = (orjson.loads(line) for line in result.stdout.splitlines())
    assert first["text"] == "xe hơi màu đỏ"  # the record keeps the user's text; only the model sees "xe_hơi"
    assert np.allclose(decode_vector(first["embedding"]), decode_vector(second["embedding"]), atol=1e-6)


@pytest.mark.parametrize("variant", [
    unicodedata.normalize("NFD", "hòa bình"),  # macOS
    "hoà bình",  # old tone-mark placement
    "HÒA   BÌNH",  # case and spacing (SigLIP lower-cases)
])
def test_query_variants_give_the_same_vector(siglip_dir, variant):
    torch_encoder = ModelCache().get(siglip_dir, "cpu", "torch")
    assert "hòa" in torch_encoder.tokenizer.get_vocab()  # so an un-normalised "hoà" would be a different token
    for encoder in (torch_encoder, ModelCache().get(siglip_dir, "cpu", "onnx-fp32")):
        expected, got = encoder.encode_texts(["hòa bình", variant])
        assert np.allclose(expected, got, atol=1e-6)


def test_a_manifest_can_override_text_rules(siglip_dir, tmp_path):
    model = tmp_path / "custom"
    shutil.copytree(siglip_dir, model)
    (model / "mmtools.json").write_text(json.dumps(
        {"format": "mmtools-model", "format_version": 1, "text": {"segment": True, "max_length": 32}}))
    rules = ModelCache().get(str(model), "cpu").text_rules
    assert (rules.segment, rules.max_length, rules.lowercase) == (True, 32, True)


def test_siglip_text_vectors_follow_its_training_no_attention_mask(siglip_dir):
    """SigLIP's text tower was trained with no mask: pads attend and the last position is pooled."""
    import torch

    encoder = ModelCache().get(siglip_dir, "cpu", "torch")
    assert encoder.text_rules.attention_mask is False
    text = "con mèo đang ngủ"
    tokens = encoder.tokenizer([text], padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        unmasked = encoder.model.get_text_features(input_ids=tokens["input_ids"]).pooler_output
        masked = encoder.model.get_text_features(**tokens).pooler_output
    unmasked = torch.nn.functional.normalize(unmasked, dim=-1).numpy()[0]
    masked = torch.nn.functional.normalize(masked, dim=-1).numpy()[0]
    got = encoder.encode_texts([text])[0]
    assert np.allclose(got, unmasked, atol=1e-5)
    assert not np.allclose(got, masked, atol=1e-3)  # the mask really changes the vector
    # The ONNX export has no mask input at all, and gives the same unmasked vector.
    onnx = ModelCache().get(siglip_dir, "cpu", "onnx-fp32")
    assert onnx.export.meta["text_inputs"] == ["input_ids"]
    assert np.allclose(onnx.encode_texts([text])[0], unmasked, atol=1e-5)


def test_clip_text_keeps_the_attention_mask(clip_dir):
    assert ModelCache().get(clip_dir, "cpu").text_rules.attention_mask is True
