import json
import unicodedata

import numpy as np
import pytest

from mmtools.errors import ModelError, UsageError
from mmtools.models import DEFAULT_MODEL, ModelCache, resolve_model
from mmtools.models.device import choose_device


def test_aliases_hub_ids_and_directories_resolve(tmp_path):
    assert resolve_model("siglip2-base").name == DEFAULT_MODEL
    assert resolve_model(None).name == DEFAULT_MODEL
    ref = resolve_model("openai/clip-vit-base-patch32")
    assert (ref.name, ref.is_local) == ("openai/clip-vit-base-patch32", False)
    local = resolve_model(str(tmp_path))
    assert local.is_local and local.name == str(tmp_path.resolve())


def test_environment_names_the_default_model(monkeypatch):
    monkeypatch.setenv("MMTOOLS_MODEL", "clip-b32")
    assert resolve_model(None).name == "openai/clip-vit-base-patch32"


@pytest.mark.parametrize("name, message", [
    ("./no/such/dir", "does not exist"),
    ("not-a-model", "unknown model"),
])
def test_unusable_names_say_why(name, message):
    with pytest.raises(ModelError, match=message):
        resolve_model(name)


def test_a_manifest_from_a_newer_mmtools_is_refused(tmp_path):
    (tmp_path / "mmtools.json").write_text(json.dumps({"format": "mmtools-model", "format_version": 99}))
    with pytest.raises(ModelError, match="newer mmtools"):
        resolve_model(str(tmp_path))


def test_uncached_hub_model_offline_gives_one_actionable_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError) as caught:
        ModelCache().get("example-org/never-downloaded", "cpu")
    assert "not in the local Hugging Face cache" in caught.value.message
    assert "--model" in caught.value.hint


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        ModelCache().get(str(tmp_path), "cpu")


def test_device_choice():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(UsageError):
        choose_device("tpu")


def test_asking_for_a_missing_gpu_is_an_error_not_a_silent_fallback():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UsageError, match="no CUDA GPU"):
        choose_device("cuda")


@pytest.fixture(scope="module")
def encoders(model_dirs):
    cache = ModelCache()
    return {arch: cache.get(path, "cpu") for arch, path in model_dirs.items()}


def test_models_are_loaded_once_per_process(siglip_dir):
    cache = ModelCache()
    assert cache.get(siglip_dir, "cpu") is cache.get(siglip_dir, "cpu")


@pytest.mark.parametrize("arch", ["siglip-tiny", "clip-tiny"])
def test_vectors_are_unit_length_and_deterministic(encoders, arch):
    from PIL import Image

    encoder = encoders[arch]
    texts = encoder.encode_texts(["một chiếc xe hơi màu đỏ", "con mèo"])
    assert texts.shape == (2, encoder.dim) and texts.dtype == np.float32
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    assert np.allclose(texts, encoder.encode_texts(["một chiếc xe hơi màu đỏ", "con mèo"]), atol=1e-6)
    images = encoder.encode_images([Image.new("RGB", (40, 30), "red"), Image.new("RGB", (30, 60), "blue")])
    assert images.shape == (2, encoder.dim)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert not np.allclose(images[0], images[1])


def test_each_family_declares_its_text_rules(encoders):
    siglip, clip = encoders["siglip-tiny"].text_rules, encoders["clip-tiny"].text_rules
    assert (siglip.lowercase, siglip.padding, siglip.max_length) == (True, "max_length", 64)
    assert (clip.lowercase, clip.padding, clip.max_length) == (False, "longest", 77)


def test_siglip_queries_are_lower_cased_and_unicode_normalised(encoders):
    encoder = encoders["siglip-tiny"]
    nfc = "Xe hơi màu đỏ"
    variants = [nfc, unicodedata.normalize("NFD", nfc), "xe  hơi   màu đỏ", "XE HƠI MÀU ĐỎ"]
    vectors = encoder.encode_texts(variants)
    for vector in vectors[1:]:
        assert np.allclose(vector, vectors[0], atol=1e-6)


def test_text_over_the_limit_is_truncated_and_reported(encoders):
    encoder = encoders["siglip-tiny"]
    truncated = []
    encoder.encode_texts(["con mèo", " ".join(["con mèo"] * 80)], on_truncated=truncated.append)
    assert truncated == [1]


def test_clip_keeps_case(encoders):
    encoder = encoders["clip-tiny"]
    lower, upper = encoder.encode_texts(["xe hơi màu đỏ", "XE HƠI MÀU ĐỎ"])
    assert not np.allclose(lower, upper, atol=1e-4)
