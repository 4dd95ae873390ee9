"""Index build, search and update: mmtools' FAISS+SQLite index against calling FAISS directly.

    python benchmarks/bench_index.py [--sizes 100000] [--hnsw-sizes 20000] [--large]

Random unit vectors (768-d); queries are stored vectors plus a little noise (random queries in 768-d are
all nearly equidistant, which makes approximate search look worse than it is on real embeddings). For each
kind and size, in the same run: build (add + write files) through ``mmtools.index.IndexWriter`` vs
``faiss.IndexIDMap2`` + ``add_with_ids`` + ``write_index``; search (a batch of queries, and single queries)
through ``IndexReader.search`` (which also fetches the hits' records from SQLite) vs ``index.search``; HNSW
Recall@10 against exact search; replacing 1,000 records in place (open, replace, write both files) vs FAISS
``remove_ids`` + ``add_with_ids`` + ``write_index``. Target: wrapper cost under 10% for search, where the
work is FAISS's; builds and updates also write the SQLite metadata (one row per record), which costs what it
costs, and is reported.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import Row, machine, median, print_table, timed

DIM = 768


def unit_vectors(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 50_000):  # in chunks: 1M × 768 float64 would need 6 GB at once
        chunk = rng.standard_normal((min(50_000, n - start), DIM), dtype=np.float32)
        out[start:start + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def build_mmtools(path: Path, vectors, kind: str, params: dict) -> None:
    from mmtools.index import IndexWriter

    with IndexWriter(path, model="bench", kind=kind, params=params, rebuild=True) as writer:
        for i, vector in enumerate(vectors):
            writer.add(f"img/{i:07d}.jpg", vector, {"path": f"img/{i:07d}.jpg"}, model="bench")


def build_faiss(path: Path, vectors, kind: str, params: dict) -> None:
    import faiss
    import numpy as np

    from mmtools.index import kinds

    index = kinds.build_empty(kind, DIM, {**kinds.DEFAULT_PARAMS[kind], **params}, vectors)
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    faiss.write_index(index, str(path))


def run(sizes: list[int], hnsw_sizes: list[int], ef_construction: int, queries: int = 200,
        work: Path | None = None) -> list[Row]:
    import faiss
    import numpy as np

    from mmtools.index import IndexReader, IndexWriter, kinds

    rows: list[Row] = []
    work = work or Path(tempfile.mkdtemp(prefix="mmtools-bench-index-"))
    try:
        plans = [("flat", n, {}) for n in sizes] + \
                [("hnsw", n, {"ef_construction": ef_construction}) for n in hnsw_sizes]
        exact: dict[int, list[list[str]]] = {}
        for kind, n, params in plans:
            label = f"{kind} {n:,}"
            vectors = unit_vectors(n, seed=n)
            rng = np.random.default_rng(1)
            picks = rng.choice(n, size=queries, replace=False)
            noisy = vectors[picks] + rng.standard_normal((queries, DIM), dtype=np.float32) * 0.02
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            ours, theirs = work / f"{kind}-{n}.faiss", work / f"{kind}-{n}.plain.faiss"
            build_ours = timed(lambda: build_mmtools(ours, vectors, kind, params), repeat=1, warmup=0)[0]
            build_theirs = timed(lambda: build_faiss(theirs, vectors, kind, params), repeat=1, warmup=0)[0]
            rows.append(Row("index build", label, n / build_ours, n / build_theirs, "vectors/s",
                            target="reported (SQLite rows included)"))
            with IndexReader(ours) as reader:
                plain = faiss.read_index(str(theirs))
                kinds.set_search_params(plain, kind, reader.info.params)
                batch_ours = median(timed(lambda: reader.search(noisy, k=10), repeat=3))
                batch_theirs = median(timed(lambda: plain.search(noisy, 10), repeat=3))
                overhead = batch_ours / batch_theirs - 1
                rows.append(Row("index search", f"{label}, {queries} queries/batch", queries / batch_ours,
                                queries / batch_theirs, "queries/s", target="wrapper < 10%",
                                ok=overhead < 0.10))
                singles = noisy[:30]
                one_ours = median(timed(lambda: [reader.search(q[None], k=10) for q in singles], repeat=3)) / 30
                one_theirs = median(timed(lambda: [plain.search(q[None], 10) for q in singles], repeat=3)) / 30
                rows.append(Row("index search", f"{label}, 1 query", one_ours * 1000, one_theirs * 1000, "ms",
                                higher_is_better=False, target="wrapper < 10%",
                                ok=one_ours / one_theirs - 1 < 0.10))
                found = [[hit.id for hit in hits] for hits in reader.search(noisy, k=10)]
            if kind == "flat":
                exact[n] = found
            if kind == "hnsw":
                reference = exact.get(n)
                if reference is None:  # no flat run at this size: exact answers straight from FAISS
                    flat = faiss.IndexFlatIP(DIM)
                    flat.add(vectors)
                    _, rows_ = flat.search(noisy, 10)
                    reference = [[f"img/{int(r):07d}.jpg" for r in q] for q in rows_]
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference)]))
                rows.append(Row("index recall", f"{label} R@10 vs exact (ef_search 128)", recall, None,
                                "recall", target="reported"))
            # Replace 1,000 records (same ids, new vectors) in place.
            fresh = unit_vectors(1000, seed=7)
            ids = rng.choice(n, size=1000, replace=False)

            def update_ours() -> None:
                with IndexWriter(ours) as writer:
                    for i, vector in zip(ids, fresh):
                        writer.add(f"img/{int(i):07d}.jpg", vector, {"path": f"img/{int(i):07d}.jpg"}, model="bench")

            def update_theirs() -> None:
                index = faiss.read_index(str(theirs))
                if kind == "flat":
                    index.remove_ids(np.asarray(ids, dtype=np.int64))
                    index.add_with_ids(fresh, np.asarray(ids, dtype=np.int64))
                else:  # HNSW cannot remove: new ids, old vectors left behind (as mmtools' tombstones)
                    index.add_with_ids(fresh, np.arange(index.ntotal, index.ntotal + 1000, dtype=np.int64))
                faiss.write_index(index, str(theirs))

            rows.append(Row("index update", f"replace 1,000 in {label}",
                            timed(update_ours, repeat=1, warmup=0)[0], timed(update_theirs, repeat=1, warmup=0)[0],
                            "s", higher_is_better=False, target="reported (whole files rewritten atomically)"))
            for path in work.glob(f"{kind}-{n}*"):
                path.unlink()
            del vectors
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="100000", help="flat index sizes, comma-separated [100000]")
    parser.add_argument("--hnsw-sizes", default="20000", help="HNSW index sizes [20000; HNSW builds are slow "
                                                              "on 2 cores]")
    parser.add_argument("--ef-construction", type=int, default=40,
                        help="HNSW ef_construction, the same for mmtools and FAISS [40; mmtools' default is 200]")


def sizes_from(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    if getattr(args, "large", False):
        return [100_000, 1_000_000], [100_000, 1_000_000]
    parse = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    return parse(args.sizes), parse(args.hnsw_sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--large", action="store_true", help="100k and 1M for both kinds (a big machine)")
    args = parser.parse_args()
    print(f"# Index benchmark\n\n{machine()}")
    flat, hnsw = sizes_from(args)
    print_table(run(flat, hnsw, args.ef_construction))


if __name__ == "__main__":
    main()
