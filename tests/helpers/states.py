"""Two generations of the same 300 records (same ids, other vectors and fields), for crash tests."""

import numpy as np

from mmtools.records import encode_vector

COUNT = 300
DIM = 16


def generation_vectors(generation):
    rng = np.random.default_rng({"old": 0, "new": 1}[generation])
    vectors = rng.normal(size=(COUNT, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def generation_records(generation):
    # The caption goes into the full-text tables, which must change with the rest (one commit point).
    word = {"old": "cũ", "new": "mới"}[generation]
    return [{"id": f"r{i}", "embedding": encode_vector(v), "embedding_model": "m", "generation": generation,
             "caption": f"ảnh {word} số {i}"} for i, v in enumerate(generation_vectors(generation))]
