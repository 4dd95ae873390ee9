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


def test_links_looping_back_or_leading_out_are_not_walked(tmp_path, siglip_dir):
    """A `latest -> .` loop used to spin (os.walk followed it for ever): links to folders are walked only
    when they stay inside the model folder and were not walked already."""
    import os

    from mmtools.models.fingerprint import model_files

    original = model_fingerprint(siglip_dir, RULES, "hf-dual-encoder")
    copy = tmp_path / "looped"
    shutil.copytree(siglip_dir, copy)
    os.symlink(".", copy / "latest")
    (copy / "nested").mkdir()
    os.symlink("..", copy / "nested" / "up")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    os.symlink(outside, copy / "elsewhere")
    names = [p.relative_to(copy).as_posix() for p in model_files(copy)]
    assert not any(name.startswith(("latest", "nested", "elsewhere")) for name in names), names
    assert model_fingerprint(copy, RULES, "hf-dual-encoder") == original


def test_sigterm_ends_a_long_command_at_once(tmp_path):
    """A command waiting for its input (or busy) ends on SIGTERM with 130, leaving nothing behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    index = tmp_path / "idx.faiss"
    for command in (["index", "-o", str(index)], ["search", "--index", str(index), "-"]):
        process = subprocess.Popen([sys.executable, "-m", "mmtools", *command], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
        time.sleep(3)  # started and waiting for input that never comes
        process.send_signal(signal.SIGTERM)
        try:
            _out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"mmtools {command[0]} ignored SIGTERM")
        # interrupted (130), killed before its handler was installed (-15), or refused before it began
        assert process.returncode in (130, -signal.SIGTERM, 3, 2), err
        assert "Traceback" not in err.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
