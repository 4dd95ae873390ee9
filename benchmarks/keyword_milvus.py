"""The keyword channel on a Milvus Lite collection against the FAISS index's FTS5 tables, in the same run: which
records each finds for the same queries, and how fast.

    python benchmarks/keyword_milvus.py [--queries 60] [--seed 0]

Two collections from the shared photos' captions (../shared/data/vi-photos/captions.jsonl, 626 photos × 5
captions), with random vectors, each written by ``mmtools.index.index_records`` to a FAISS file and to a Milvus
Lite collection: one record a caption (3,130 records of one text each) and one record a photo (626 records of
five captions). Queries: two or three neighbouring words of a caption, half of them typed without accents,
one in five quoted as a phrase. For each query both backends are asked for every match (the sets must be the
same) and for the top 10 (timed; the overlap of the two top-10 lists tells how alike the orders are: BM25 over a
record's texts together, in Milvus, against FTS5's BM25 of each text).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

from common import Row, machine, median, percentile, print_table, shared_data

CAPTIONS = shared_data("vi-photos", "captions.jsonl")


def make_records(per_caption: bool, seed: int) -> list[dict]:
    from mmtools.records import encode_vector

    photos = [orjson.loads(line) for line in CAPTIONS.read_bytes().splitlines() if line.strip()]
    texts = [[caption] for photo in photos for caption in photo["captions"]] if per_caption else \
        [photo["captions"] for photo in photos]
    vectors = np.random.default_rng(seed).standard_normal((len(texts), 16)).astype(np.float32)
    return [{"id": f"r{i}", "captions": captions, "embedding": encode_vector(vector), "embedding_model": "random-16"}
            for i, (captions, vector) in enumerate(zip(texts, vectors))]


def make_queries(records: list[dict], count: int, seed: int) -> list[str]:
    from mmtools.text.accents import fold, syllables

    chooser = random.Random(seed)
    queries = []
    while len(queries) < count:
        words = syllables(chooser.choice(chooser.choice(records)["captions"]))
        if len(words) < 3:
            continue
        length = chooser.choice((2, 3))
        start = chooser.randrange(len(words) - length + 1)
        text = " ".join(words[start:start + length])
        if len(queries) % 2:
            text = fold(text)
        if len(queries) % 5 == 0:
            text = f'"{text}"'
        queries.append(text)
    return queries


def timed_build(records: list[dict], location: str) -> float:
    from mmtools.index import index_records

    start = time.perf_counter()
    index_records(records, location)
    return time.perf_counter() - start


def compare(records: list[dict], queries: list[str], folder: str, name: str) -> list[Row]:
    from mmtools.index.backends import open_reader

    faiss, milvus = str(Path(folder) / f"{name}.faiss"), f"milvus-lite://{folder}/kw.db/{name}"
    built = {"faiss": timed_build(records, faiss), "milvus": timed_build(records, milvus)}
    same_sets, overlaps, matched, seconds = 0, [], [], {"faiss": [], "milvus": []}
    with open_reader(faiss) as plain, open_reader(milvus) as collection:
        for query in queries:
            every = [{hit.id for hit in reader.keyword_search(query, len(records))} for reader in (plain, collection)]
            same_sets += every[0] == every[1]
            matched.append(len(every[0]))
            tops = {}
            for backend, reader in (("faiss", plain), ("milvus", collection)):
                reader.keyword_search(query, 10)  # warm
                start = time.perf_counter()
                tops[backend] = [hit.id for hit in reader.keyword_search(query, 10)]
                seconds[backend].append(time.perf_counter() - start)
            if tops["faiss"]:
                overlaps.append(len(set(tops["faiss"]) & set(tops["milvus"])) / len(tops["faiss"]))
    ms = {backend: [1000 * s for s in values] for backend, values in seconds.items()}
    case = f"{len(records)} records of {name.replace('_', ' ')}"
    print(f"{case}: median {median(matched):.0f} matching records a query, max {max(matched)}")
    rows = [
        Row("keyword", f"{case}: queries matching the same set", same_sets, len(queries), "queries",
            target="all", ok=same_sets == len(queries)),
        Row("keyword", f"{case}: top-10 overlap with FTS5 (mean)", float(np.mean(overlaps)), 1.0, "share"),
        Row("keyword", f"{case}: top-10 query, median", median(ms["milvus"]), median(ms["faiss"]), "ms",
            higher_is_better=False),
        Row("keyword", f"{case}: top-10 query, p95", percentile(ms["milvus"], 0.95),
            percentile(ms["faiss"], 0.95), "ms", higher_is_better=False),
        Row("keyword", f"{case}: index (vectors and texts)", built["milvus"], built["faiss"], "s",
            higher_is_better=False),
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import milvus_lite  # noqa: F401
    except ImportError:
        print("Milvus Lite is not installed: pip install 'mmtools[milvus]'", file=sys.stderr)
        return 1
    print(f"# keyword channel: Milvus Lite vs FAISS (FTS5)\n\n{machine()}\n")
    rows = run(args.queries, args.seed)
    print_table(rows, "Milvus Lite (mmtools) vs the FAISS index's FTS5 (baseline)")
    return 0 if all(row.ok is not False for row in rows) else 1


def run(queries: int = 60, seed: int = 0) -> list[Row]:
    """The rows of both collections (benchmarks/run_all.py's keyword part)."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, per_caption in (("one caption", True), ("five captions", False)):
            records = make_records(per_caption, seed)
            asked = make_queries(records, queries, seed)
            rows += compare(records, asked, folder, name.replace(" ", "_"))
    print(f"queries, e.g.: {asked[:4]}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
