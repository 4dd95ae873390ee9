"""The embedding cache: unchanged, renamed and already-done files are not encoded again; records say what
their file was, so an index can follow a folder."""

import os
import shutil
import stat

import numpy as np
import pytest
from PIL import Image

from mmtools.embed import embed_images
from mmtools.embed_cache import EmbeddingCache, cached_image_encoder
from mmtools.filehash import hash_file
from mmtools.images import discover_images
from mmtools.models import load_encoder
from mmtools.records import decode_vector


class CountingLoader:
    """Loads the real encoder, counting loads and images encoded."""

    def __init__(self):
        self.loads = 0
        self.encoded = 0

    def __call__(self, model, device):
        self.loads += 1
        encoder = load_encoder(model, "cpu")
        loader = self
        for method in ("encode_image_batch", "encode_image_batch_alone"):  # one batch, or one of several at once
            def counted(batch, original=getattr(encoder, method)):
                vectors = original(batch)
                loader.encoded += len(vectors)
                return vectors

            setattr(encoder, method, counted)
        return encoder


def run(folder, model, cache_path, loader, **kwargs):
    encoder, cache = cached_image_encoder(model, "cpu", load=loader, cache_path=cache_path)
    records = list(embed_images(discover_images([str(folder)], root=str(folder)), encoder, batch_size=2,
                                workers=2, cache=cache, **kwargs))
    return records, encoder


def test_a_rerun_over_unchanged_files_loads_no_model_and_gives_the_same_vectors(tmp_path, photos, siglip_dir):
    cache_path = tmp_path / "cache.sqlite"
    loader = CountingLoader()
    first, _ = run(photos, siglip_dir, cache_path, loader)
    assert (loader.loads, loader.encoded) == (1, 8)
    again_loader = CountingLoader()
    again, encoder = run(photos, siglip_dir, cache_path, again_loader)
    assert again_loader.loads == 0 and not encoder.loaded
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert again == first  # same vectors, same fingerprint, same file facts


def test_renamed_files_are_not_encoded_again_and_changed_ones_are(tmp_path, photos, siglip_dir):
    cache_path = tmp_path / "cache.sqlite"
    run(photos, siglip_dir, cache_path, CountingLoader())
    names = sorted(photos.glob("*.jpg"))
    names[0].rename(photos / "renamed.jpg")
    Image.new("RGB", (40, 30), "purple").save(names[1])  # same name, new content
    loader = CountingLoader()
    records, _ = run(photos, siglip_dir, cache_path, loader)
    assert loader.encoded == 1
    by_id = {r["id"]: r for r in records}
    assert "renamed.jpg" in by_id and by_id[names[1].name]["sha256"] == hash_file(names[1])


def test_an_interrupted_run_started_again_does_not_redo_its_work(tmp_path, photos, siglip_dir):
    cache_path = tmp_path / "cache.sqlite"
    encoder, cache = cached_image_encoder(siglip_dir, "cpu", load=CountingLoader(), cache_path=cache_path)
    stream = embed_images(discover_images([str(photos)]), encoder, batch_size=2, workers=1, prefetch=1,
                          cache=cache)
    for _ in range(4):  # the process dies after four records
        next(stream)
    stream.close()
    loader = CountingLoader()
    records, _ = run(photos, siglip_dir, cache_path, loader)
    assert len(records) == 8 and loader.encoded <= 4


def test_image_records_carry_size_mtime_and_content_hash(tmp_path, photos, siglip_dir):
    records, _ = run(photos, siglip_dir, tmp_path / "c.sqlite", CountingLoader())
    first = records[0]
    path = photos / first["path"]
    assert first["file_size"] == path.stat().st_size
    assert first["file_mtime"] == pytest.approx(path.stat().st_mtime, abs=1e-3)
    assert first["sha256"] == hash_file(path)
    assert first["embedding_fingerprint"].startswith("fp-")


def test_a_model_retrained_in_place_gets_new_vectors_not_cached_ones(tmp_path, photos):
    from mmtools.models import default_cache
    from mmtools.models.synthetic import build_random_model

    model = tmp_path / "model"
    build_random_model(model, "siglip-tiny", seed=0)
    cache_path = tmp_path / "c.sqlite"
    first, _ = run(photos, str(model), cache_path, CountingLoader())
    shutil.rmtree(model)
    build_random_model(model, "siglip-tiny", seed=1)
    default_cache.clear()
    loader = CountingLoader()
    again, _ = run(photos, str(model), cache_path, loader)
    assert loader.encoded == 8
    assert not np.allclose(decode_vector(first[0]["embedding"]), decode_vector(again[0]["embedding"]))
    assert first[0]["embedding_fingerprint"] != again[0]["embedding_fingerprint"]


def test_the_cache_directory_is_private_and_files_follow_the_umask(tmp_path, monkeypatch):
    from mmtools.paths import cache_dir

    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "c"))
    old = os.umask(0o022)
    try:
        folder = cache_dir()
        cache = EmbeddingCache()
        cache.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "embeddings.sqlite").stat().st_mode) == 0o644


def test_an_unusable_cache_is_reported_and_embedding_goes_on(tmp_path, photos, siglip_dir, caplog):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    encoder, cache = cached_image_encoder(siglip_dir, "cpu", cache_path=bad)
    assert cache is None and "embedding without it" in caplog.text
    assert len(list(embed_images(discover_images([str(photos)]), encoder))) == 8
