"""Near-identical photos in an index: resized, re-compressed and lightly cropped copies of one photo.

Two stages, because neither alone is enough:

1. **Candidates from the vectors.** Every stored vector is put in an in-memory exact inner-product index
   (FAISS ``IndexFlatIP``) and searched against itself with a range search, a batch of queries at a time:
   pairs whose cosine similarity is at least ``threshold`` are candidates. This keeps the work near the
   number of true pairs instead of comparing every photo with every other.
2. **Confirmation by perceptual hashes** (the ``imagehash`` package, ``pip install 'mmtools[duplicates]'``).
   Vectors of a model see *what* a photo shows, so two different shots of one scene are close too; a hash
   sees *how* it looks. Each photo's 64-bit pHash and dHash are taken of the whole photo and of 50 crops of
   it (92% and 95% of each side, at 5 × 5 positions), so a copy cut 5–8% smaller still meets an aligned
   crop of its original. A pair is confirmed when, at its best alignment, the two coarse hashes together
   differ in at most ``COARSE_BITS`` of 128 bits and a fine 256-bit pHash of the aligned pair in at most
   ``FINE_BITS``: the fine hash tells a copy from another moment of the same scene (a tennis serve a second
   later), which the coarse ones cannot.

Confirmed pairs are joined into groups (union-find). A group's ``score`` is the lowest vector similarity of
the pairs that hold it together, ``score_mean`` their mean. The hash thresholds were measured on the shared
photos (``benchmarks/duplicates.py --measure-hashes 150``): copies differ by at most 9 coarse and 42 fine
bits; distinct photos by at least 10 coarse bits (two shots of one serve; every other pair of the 195,000 by
22 or more) and 92 fine bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from mmtools.errors import IndexFileError, MissingDependencyError, Problem, ProblemHandler, raise_problem

DEFAULT_THRESHOLD = 0.80  # cosine: generous, the hashes decide (see README, "Near-duplicate photos")
COARSE_BITS = 16  # of 128 (64-bit pHash + 64-bit dHash) at the best alignment
FINE_BITS = 64  # of 256 (16 × 16 pHash of the aligned pair)
CROP_SIZES = (0.92, 0.95)
CROP_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
HASH_SIDE = 160  # photos are shrunk to this many pixels on the long side before hashing
PAIRS_PER_BATCH = 1 << 22  # range-search results one batch of queries may return at most (memory bound)
VECTOR_CHUNK = 4096  # stored vectors read at a time

STORED_ONLY = ("embedding", "embedding_model", "embedding_fingerprint", "embedding_kind")


@dataclass
class _Item:
    id: str
    path: str | None


class _UnionFind:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def _imagehash() -> Any:
    try:
        import imagehash
    except ImportError:
        raise MissingDependencyError("finding duplicates needs the imagehash package (perceptual hashes)",
                                     hint="pip install 'mmtools[duplicates]'") from None
    return imagehash


# ------------------------------------------------------------------------------------------------ vectors


def stored_vectors(reader: Any, chunk: int = VECTOR_CHUNK) -> tuple[list[_Item], Any]:
    """The ids, paths (as they open from here) and an ``IndexFlatIP`` of every stored vector of an open index.
    A FAISS index is read through ``scan`` and ``vectors_of``; any other reader (Milvus) through ``export``."""
    import faiss
    import numpy as np

    from mmtools.records import decode_vector

    items: list[_Item] = []
    flat: Any = None

    def add(vectors: Any) -> None:
        nonlocal flat
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        faiss.normalize_L2(vectors)
        if flat is None:
            flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)

    where = getattr(reader, "path", None) or getattr(reader, "location", "the index")
    if hasattr(reader, "vectors_of"):
        rows: list[int] = []

        def flush() -> None:
            vectors = reader.vectors_of(rows)
            if vectors is None:
                raise IndexFileError(f"index {where} keeps no exact vectors (an ivfpq index built with "
                                     "keep_vectors=0 holds only compressed codes), so it cannot be searched "
                                     "for duplicates", hint="rebuild it with --param keep_vectors=1")
            add(vectors)
            rows.clear()

        for row, item_id, record in reader.scan():
            items.append(_Item(item_id, reader.hit_path(item_id, record)))
            rows.append(row)
            if len(rows) >= chunk:
                flush()
        if rows:
            flush()
    else:
        batch = []
        for record in reader.export("base64"):
            path = record.get("path")
            items.append(_Item(record["id"], path if isinstance(path, str) else None))
            batch.append(decode_vector(record["embedding"]))
            if len(batch) >= chunk:
                add(np.stack(batch))
                batch = []
        if batch:
            add(np.stack(batch))
    return items, flat


def candidate_pairs(flat: Any, threshold: float, pairs_per_batch: int = PAIRS_PER_BATCH
                    ) -> Iterator[tuple[int, int, float]]:
    """``(i, j, cosine)`` with ``i < j`` for every pair of stored vectors at least ``threshold`` alike, by
    FAISS range search; queries go a batch at a time, so what one batch returns stays bounded."""
    if flat is None or flat.ntotal < 2:
        return
    count = flat.ntotal
    batch = max(1, min(1024, pairs_per_batch // count))
    for start in range(0, count, batch):
        stop = min(count, start + batch)
        queries = flat.reconstruct_n(start, stop - start)
        limits, scores, neighbours = flat.range_search(queries, threshold)
        for offset in range(stop - start):
            i = start + offset
            for at in range(limits[offset], limits[offset + 1]):
                j = int(neighbours[at])
                if j > i:
                    yield i, j, float(scores[at])


# ------------------------------------------------------------------------------------------------- hashes


def _crop_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    boxes = [(0, 0, width, height)]
    for size in CROP_SIZES:
        crop_w, crop_h = width * size, height * size
        for fy in CROP_POSITIONS:
            for fx in CROP_POSITIONS:
                x, y = fx * (width - crop_w), fy * (height - crop_h)
                boxes.append((round(x), round(y), round(x + crop_w), round(y + crop_h)))
    return boxes


def _bits(image_hash: Any) -> int:
    import numpy as np

    return int.from_bytes(np.packbits(image_hash.hash.ravel()).tobytes(), "big")


def hash_image(path: str) -> Any:
    """The photo, in grey and at most ``HASH_SIDE`` pixels on the long side, as hashing sees it;
    mmtools.images.ImageDecodeError when it cannot be read."""
    from PIL import Image

    from mmtools.images import load_image

    image = load_image(path, draft_size=HASH_SIDE).convert("L")
    image.thumbnail((HASH_SIDE, HASH_SIDE), Image.LANCZOS)
    return image


@dataclass
class PhotoHashes:
    """A photo's coarse hashes (whole photo first, then each crop of ``_crop_boxes``) and where it is."""

    path: str
    phash: Any  # uint64 array
    dhash: Any

    @classmethod
    def of(cls, path: str) -> "PhotoHashes":
        import numpy as np

        imagehash = _imagehash()
        image = hash_image(path)
        crops = [image.crop(box) for box in _crop_boxes(*image.size)]
        return cls(path, np.array([_bits(imagehash.phash(c)) for c in crops], dtype=np.uint64),
                   np.array([_bits(imagehash.dhash(c)) for c in crops], dtype=np.uint64))


def coarse_distance(a: PhotoHashes, b: PhotoHashes) -> tuple[int, int]:
    """The fewest differing bits (pHash + dHash) between one photo whole and the other whole or cropped,
    and which alignment gave them (``< len`` crops of ``a``; else crops of ``b``, offset by that length)."""
    import numpy as np

    distances = np.concatenate([np.bitwise_count(a.phash ^ b.phash[0]) + np.bitwise_count(a.dhash ^ b.dhash[0]),
                                np.bitwise_count(b.phash ^ a.phash[0]) + np.bitwise_count(b.dhash ^ a.dhash[0])])
    best = int(distances.argmin())
    return int(distances[best]), best


def fine_distance(a: PhotoHashes, b: PhotoHashes, alignment: int) -> int:
    """Differing bits of a 256-bit pHash of the pair at this alignment (one cropped, the other whole)."""
    imagehash = _imagehash()
    cropped, whole = (a, b) if alignment < len(a.phash) else (b, a)
    at = alignment if alignment < len(a.phash) else alignment - len(a.phash)
    image = hash_image(cropped.path)
    region = image.crop(_crop_boxes(*image.size)[at])
    return int(imagehash.phash(region, hash_size=16) - imagehash.phash(hash_image(whole.path), hash_size=16))


def same_photo(a: PhotoHashes, b: PhotoHashes, coarse_bits: int = COARSE_BITS, fine_bits: int = FINE_BITS
               ) -> bool:
    coarse, alignment = coarse_distance(a, b)
    return coarse <= coarse_bits and fine_distance(a, b, alignment) <= fine_bits


# ------------------------------------------------------------------------------------------------- groups


def find_duplicates(
    reader: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    coarse_bits: int = COARSE_BITS,
    fine_bits: int = FINE_BITS,
    on_problem: ProblemHandler = raise_problem,
    progress: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Groups of near-identical photos in an open index: ``{"members": [stored records, with id and path
    as it opens from here], "score": lowest cosine of the pairs holding the group, "score_mean": ...}``,
    in index order. A photo whose file cannot be read is reported through ``on_problem`` and left out.
    ``progress`` is called with the number of candidate pairs checked."""
    from mmtools.images import ImageDecodeError

    _imagehash()  # say what is missing before any work
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a cosine similarity (between -1 and 1)")
    items, flat = stored_vectors(reader)
    hashes: dict[int, PhotoHashes | None] = {}

    def hashes_of(i: int) -> PhotoHashes | None:
        if i not in hashes:
            item = items[i]
            if item.path is None:
                on_problem(Problem(item.id, "the record has no path: it cannot be compared"))
                hashes[i] = None
            else:
                try:
                    hashes[i] = PhotoHashes.of(item.path)
                except ImageDecodeError as exc:
                    on_problem(Problem(item.path, str(exc)))
                    hashes[i] = None
        return hashes[i]

    groups = _UnionFind(len(items))
    edges: list[tuple[int, int, float]] = []
    for i, j, score in candidate_pairs(flat, threshold):
        a, b = hashes_of(i), hashes_of(j)
        if a is not None and b is not None and same_photo(a, b, coarse_bits, fine_bits):
            groups.union(i, j)
            edges.append((i, j, score))
        if progress:
            progress(1)
    members: dict[int, list[int]] = {}
    scores: dict[int, list[float]] = {}
    for i, j, score in edges:
        scores.setdefault(groups.find(i), []).append(score)
    for i in range(len(items)):
        root = groups.find(i)
        if root in scores:
            members.setdefault(root, []).append(i)
    for root in sorted(members):
        found = scores[root]
        yield {"members": [_member(reader, items[i]) for i in members[root]],
               "score": round(min(found), 6), "score_mean": round(sum(found) / len(found), 6)}


def _member(reader: Any, item: _Item) -> dict[str, Any]:
    record = {key: value for key, value in (reader.get(item.id) or {}).items() if key not in STORED_ONLY}
    record["id"] = item.id
    if item.path is not None:
        record["path"] = item.path
    return record


def group_paths(group: dict[str, Any]) -> list[str]:
    """A group's members as paths (ids where a member has none)."""
    return [str(member.get("path") or member["id"]) for member in group["members"]]


__all__ = ["COARSE_BITS", "DEFAULT_THRESHOLD", "FINE_BITS", "PhotoHashes", "candidate_pairs", "coarse_distance",
           "find_duplicates", "fine_distance", "group_paths", "same_photo", "stored_vectors"]
