"""Model fingerprints: same contents give the same fingerprint wherever they lie; other contents another."""

import shutil

import pytest

from mmtools.errors import ModelError
from mmtools.models.fingerprint import PREFIX, model_fingerprint
from mmtools.text.prepare import TextRules

RULES = TextRules(max_length=64, lowercase=True, padding="max_length")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))


def test_moved_and_copied_directories_keep_their_fingerprint(tmp_path, siglip_dir):
    original = model_fingerprint(siglip_dir, RULES, "hf-dual-encoder")
    assert original.startswith(PREFIX) and len(original) == len(PREFIX) + 16
    copy = tmp_path / "copy"
    shutil.copytree(siglip_dir, copy)
    moved = tmp_path / "moved"
    copy.rename(moved)
    assert model_fingerprint(moved, RULES, "hf-dual-encoder") == original


def test_retrained_weights_text_rules_and_family_change_it(tmp_path, siglip_dir):
    from mmtools.models.synthetic import build_random_model

    original = model_fingerprint(siglip_dir, RULES)
    target = tmp_path / "model"
    shutil.copytree(siglip_dir, target)
    build_random_model(target, "siglip-tiny", seed=1)  # "retrained" into the same directory
    assert model_fingerprint(target, RULES) != original
    assert model_fingerprint(siglip_dir, TextRules(max_length=64)) != original
    assert model_fingerprint(siglip_dir, RULES, "other-family") != original


def test_hash_cache_is_used_and_notices_a_rewrite(tmp_path, monkeypatch):
    from mmtools import filehash

    file = tmp_path / "weights.safetensors"
    file.write_bytes(b"a" * 1000)
    first = filehash.file_sha256(file)
    calls = []
    real = filehash.hash_file
    monkeypatch.setattr(filehash, "hash_file", lambda p: calls.append(p) or real(p))
    assert filehash.file_sha256(file) == first and not calls  # from the cache
    file.write_bytes(b"b" * 1000)
    assert filehash.file_sha256(file) != first and calls


def test_a_directory_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="safetensors"):
        model_fingerprint(tmp_path, RULES)


def test_encoders_and_embedding_records_carry_it(siglip_dir):
    from mmtools.embed import TextItem, embed_texts
    from mmtools.models import load_encoder

    encoder = load_encoder(siglip_dir, "cpu")
    record = next(embed_texts([TextItem("a", "xe hơi")], encoder))
    assert record["embedding_fingerprint"] == encoder.fingerprint
    assert encoder.fingerprint == model_fingerprint(siglip_dir, encoder.text_rules, "hf-dual-encoder")
