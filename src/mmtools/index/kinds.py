"""The FAISS index kinds mmtools builds, and how each is tuned at search time.

Every kind is wrapped in IndexIDMap2, so vectors carry the metadata row id as their FAISS id and plain
``faiss.read_index`` opens the file. All kinds use inner product on unit vectors (cosine similarity).

* flat: exact search. The default; right up to a few million vectors.
* hnsw: graph search, fast on large collections; approximate; deletions become tombstones.
* ivf:  inverted lists over 8-bit scalar-quantised vectors, then exact re-ranking of the best
        ``k × rerank`` candidates against the full vectors, so scores are exact inner products.
"""

from __future__ import annotations

import math
from typing import Any

KINDS = ("flat", "hnsw", "ivf")

DEFAULT_PARAMS: dict[str, dict[str, int]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
    "ivf": {"nlist": 1024, "nprobe": 32, "rerank": 4},
}

# Parameters that only steer search, so an existing index can take new values; the others shape the build.
SEARCH_PARAMS = frozenset({"ef_search", "nprobe", "rerank"})
ALL_PARAMS = frozenset(key for params in DEFAULT_PARAMS.values() for key in params)

# IVF needs a training sample before it can take vectors: FAISS wants about 39 points per list.
POINTS_PER_LIST = 39


def needs_training(kind: str) -> bool:
    return kind == "ivf"


def training_size(params: dict[str, int]) -> int:
    return max(10_000, POINTS_PER_LIST * params["nlist"])


def build_empty(kind: str, dim: int, params: dict[str, int], train_vectors: Any = None) -> Any:
    import faiss

    if kind == "flat":
        base = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, params["m"], faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = params["ef_construction"]
    elif kind == "ivf":
        count = len(train_vectors)
        nlist = max(1, min(params["nlist"], count // POINTS_PER_LIST, int(4 * math.sqrt(count)) or 1))
        params["nlist"] = nlist  # what was actually built, recorded in the metadata
        quantizer = faiss.IndexFlatIP(dim)
        coarse = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                               faiss.METRIC_INNER_PRODUCT)
        coarse.train(train_vectors)
        base = faiss.IndexRefineFlat(coarse)
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    return faiss.IndexIDMap2(base)


def set_search_params(index: Any, kind: str, params: dict[str, int]) -> None:
    import faiss

    base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
    if kind == "hnsw":
        base.hnsw.efSearch = params["ef_search"]
    elif kind == "ivf":
        base.k_factor = float(params["rerank"])
        ivf = faiss.extract_index_ivf(base.base_index)
        ivf.nprobe = min(params["nprobe"], ivf.nlist)


def supports_removal(kind: str) -> bool:
    """HNSW graphs and the re-ranking wrapper cannot drop vectors: mmtools keeps tombstones for them."""
    return kind == "flat"
