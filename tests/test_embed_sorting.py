"""embed_texts batches texts of similar length together and gives the records back in input order."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

from mmtools.embed import embed_texts, text_items_from_lines
from mmtools.records import decode_vector


class FakeEncoder:
    name = "fake"
    fingerprint = "fp-0000000000000000"

    def __init__(self, padding):
        self.text_rules = SimpleNamespace(max_length=64, padding=padding)
        self.batches = []

    def encode_texts(self, texts, on_truncated=None):
        self.batches.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def _texts(n=200):
    rng = random.Random(0)
    return [" ".join("từ" for _ in range(rng.randint(1, 40))) + f" {i}" for i in range(n)]


def test_batches_are_length_sorted_and_records_come_back_in_input_order():
    texts = _texts()
    encoder = FakeEncoder(padding=None)
    records = list(embed_texts(text_items_from_lines((str(i), t) for i, t in enumerate(texts)), encoder,
                               batch_size=8))
    assert [r["text"] for r in records] == texts
    assert [decode_vector(r["embedding"])[0] for r in records] == [len(t) for t in texts]
    spread = [max(map(len, b)) - min(map(len, b)) for b in encoder.batches]
    unsorted = [max(map(len, texts[i:i + 8])) - min(map(len, texts[i:i + 8])) for i in range(0, len(texts), 8)]
    assert sum(spread) < sum(unsorted) / 4  # far less padding per batch


def test_fixed_length_models_keep_input_order_batches():
    texts = _texts(40)
    encoder = FakeEncoder(padding="max_length")
    list(embed_texts(text_items_from_lines((str(i), t) for i, t in enumerate(texts)), encoder, batch_size=8))
    assert encoder.batches == [texts[i:i + 8] for i in range(0, 40, 8)]


def test_sorted_batches_give_the_vectors_of_texts_encoded_alone(clip_dir):
    from mmtools.models import load_encoder

    encoder = load_encoder(clip_dir, "cpu")
    texts = ["mèo", "một chiếc xe hơi màu đỏ đậu trước cửa nhà", "nhà", "con chó đang chạy trên bãi biển xanh"]
    records = list(embed_texts(text_items_from_lines((str(i), t) for i, t in enumerate(texts)), encoder,
                               batch_size=2))
    assert [r["text"] for r in records] == texts
    alone = np.stack([encoder.encode_texts([t])[0] for t in texts])
    assert np.allclose(np.stack([decode_vector(r["embedding"]) for r in records]), alone, atol=1e-5)
