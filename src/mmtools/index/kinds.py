"""The FAISS index kinds mmtools builds, how each is tuned at search time, and how its vectors come back out.

All kinds use inner product on unit vectors (cosine similarity), and FAISS ids are the metadata row ids, so
plain ``faiss.read_index`` opens every segment file.

* flat:  exact search. The default; right up to a few million vectors. Wrapped in IndexIDMap2.
* hnsw:  graph search, fast on large collections; approximate; deletions become tombstones. IndexIDMap2.
* ivf:   inverted lists over 8-bit scalar-quantised vectors, then exact re-ranking of the best
         ``k × rerank`` candidates against the full vectors kept in the file (IndexRefineFlat, IndexIDMap2).
* ivfpq: inverted lists of product-quantised codes (``pq_m`` bytes a vector), for collections past memory:
         trained on a sample, filled chunk by chunk (or part by part with --merge), searched memory-mapped.
         With ``keep_vectors=1`` the full vectors live in the metadata (on disk, not in memory) and the best
         ``k × rerank`` candidates are re-ranked exactly; with ``keep_vectors=0`` scores are PQ estimates.
         A plain IndexIVFPQ holding the row ids itself (it removes vectors, so it keeps no tombstones).
"""

from __future__ import annotations

import math
from typing import Any

KINDS = ("flat", "hnsw", "ivf", "ivfpq")

DEFAULT_PARAMS: dict[str, dict[str, int]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
    "ivf": {"nlist": 1024, "nprobe": 32, "rerank": 4},
    "ivfpq": {"nlist": 1024, "pq_m": 16, "nbits": 8, "nprobe": 32, "rerank": 4, "keep_vectors": 1},
}

# Parameters that only steer search, so an existing index can take new values; the others shape the build.
SEARCH_PARAMS = frozenset({"ef_search", "nprobe", "rerank"})
ALL_PARAMS = frozenset(key for params in DEFAULT_PARAMS.values() for key in params)
# Smallest and largest accepted values (default: at least 1, no upper bound).
PARAM_RANGES: dict[str, tuple[int, int | None]] = {"rerank": (0, None), "keep_vectors": (0, 1), "nbits": (1, 16)}

# IVF needs a training sample before it can take vectors: FAISS wants about 39 points per centroid.
POINTS_PER_LIST = 39
# Retrain an IVF index on compaction once it holds this many times the vectors it was trained on.
RETRAIN_GROWTH = 4


def param_error(key: str, value: int) -> str | None:
    """Why ``value`` is out of range for ``key``, or None when it is fine."""
    low, high = PARAM_RANGES.get(key, (1, None))
    if high is not None and not low <= value <= high:
        return f"{key} must be between {low} and {high}"
    if value < low:
        return f"{key} must be at least {low}"
    return None


def needs_training(kind: str) -> bool:
    return kind in ("ivf", "ivfpq")


def training_size(params: dict[str, int]) -> int:
    return max(10_000, POINTS_PER_LIST * params["nlist"])


def keeps_vectors_in_metadata(kind: str, params: dict[str, int]) -> bool:
    return kind == "ivfpq" and bool(params.get("keep_vectors", 1))


def should_retrain(kind: str, params: dict[str, int], trained: dict[str, int], count: int) -> bool:
    """An IVF index trained on few vectors has too few (or badly placed) lists once it has grown well past them."""
    trained_on = trained.get("on", 0)
    return (needs_training(kind) and 0 < trained_on < training_size(params)
            and count >= RETRAIN_GROWTH * trained_on)


def build_empty(kind: str, dim: int, params: dict[str, int], train_vectors: Any = None) -> tuple[Any, dict]:
    """A new, trained, empty index, and what its training settled (recorded in the metadata)."""
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), {}
    if kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, params["m"], faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = params["ef_construction"]
        return faiss.IndexIDMap2(base), {}
    count = len(train_vectors)
    nlist = max(1, min(params["nlist"], count // POINTS_PER_LIST, int(4 * math.sqrt(count)) or 1))
    quantizer = faiss.IndexFlatIP(dim)
    if kind == "ivf":
        coarse = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                               faiss.METRIC_INNER_PRODUCT)
        coarse.cp.min_points_per_centroid = 1  # a small sample is said once, by training_note
        coarse.train(train_vectors)
        return faiss.IndexIDMap2(faiss.IndexRefineFlat(coarse)), {"on": count, "nlist": nlist}
    if kind == "ivfpq":
        pq_m = max(m for m in range(1, min(params["pq_m"], dim) + 1) if dim % m == 0)
        # Fewer codes per sub-quantiser for a small sample: FAISS wants 39 training points per code.
        nbits = max(1, min(params["nbits"], int(math.log2(max(2, count // POINTS_PER_LIST)))))
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, pq_m, nbits, faiss.METRIC_INNER_PRODUCT)
        # FAISS warns once per sub-quantiser (16 times) about a small sample; training_note says it once.
        index.cp.min_points_per_centroid = 1
        index.pq.cp.min_points_per_centroid = 1
        index.train(train_vectors)
        return index, {"on": count, "nlist": nlist, "pq_m": pq_m, "nbits": nbits}
    raise ValueError(f"unknown index kind {kind!r}")


def training_note(kind: str, trained: dict[str, int]) -> str | None:
    """A sentence for the user when an IVF index was trained on fewer vectors than its codes want."""
    count = trained.get("on", 0)
    if not needs_training(kind) or not count:
        return None
    wanted = POINTS_PER_LIST * max(trained.get("nlist", 1), 2 ** trained.get("nbits", 0))
    if count >= wanted:
        return None
    return (f"{kind} index trained on only {count} vectors (its codes want {wanted}); search is approximate "
            f"and coarse until it grows (it is retrained at {RETRAIN_GROWTH}x its sample); a flat index is "
            "exact and fast at this size")


def set_search_params(index: Any, kind: str, params: dict[str, int]) -> None:
    import faiss

    if kind == "ivfpq":
        index.nprobe = min(params["nprobe"], index.nlist)
        return
    base = faiss.downcast_index(index.index)
    if kind == "hnsw":
        base.hnsw.efSearch = params["ef_search"]
    elif kind == "ivf":
        base.k_factor = float(max(1, params["rerank"]))
        ivf = faiss.extract_index_ivf(base.base_index)
        ivf.nprobe = min(params["nprobe"], ivf.nlist)


def supports_removal(kind: str) -> bool:
    """HNSW graphs and the re-ranking wrapper cannot drop vectors: mmtools keeps tombstones for them."""
    return kind in ("flat", "ivfpq")


def stored_vectors(index: Any, kind: str) -> tuple[Any, Any] | None:
    """``(row_ids, vectors)`` of every vector in the file, tombstones included; None where the file keeps no
    exact vectors (ivfpq: they are in the metadata, if kept at all)."""
    import faiss

    if kind == "ivfpq":
        return None
    inner = faiss.downcast_index(index.index)
    ids = faiss.vector_to_array(index.id_map).astype("int64")
    vectors = inner.reconstruct_n(0, inner.ntotal) if inner.ntotal else None
    return ids, vectors
