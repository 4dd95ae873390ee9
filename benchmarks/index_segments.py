"""Writes that cost what they change: replacing a few records of a big flat index, against today's
whole-file rewrite and a bare FAISS add, measured in the same run; search over 1 vs 8 segments.

    .venv/bin/python benchmarks/index_segments.py [--records 100000] [--dim 512] [--replace 100]
                                                  [--search-segments 8]

Random unit vectors, generated in chunks and fed through the real ``IndexWriter`` (records shaped like
embed-images output). Each measured step runs in its own process, so that its peak memory (ru_maxrss) and
the bytes it writes (``wchar`` of /proc/self/io: everything handed to write(), SQLite's WAL and checkpoint,
FAISS files) are its own. Steps:

* build: the first build of the index;
* replace: an update of ``--replace`` records (new vectors for existing ids) through ``index_records``;
* rewrite baseline (what every write did before segments): load the whole FAISS index, remove and add
  the same vectors, write it to a new file, and copy the SQLite file;
* bare FAISS: ``IndexIDMap2(IndexFlatIP)`` of just the new vectors, ``add_with_ids`` and ``write_index``;
* search: 100 queries, k=10, through ``IndexReader.search`` on the index in 1 segment and in 8.

With ``--kind ivf`` or ``--kind ivfpq`` the baseline is instead the same replacement into a copy of the
index with each new segment carrying its own coarse centroids (what format-3 mmtools wrote), so the
figure is what sharing the trained index's centroids saves.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, machine, print_table

CHUNK = 20_000


def vectors(start: int, count: int, dim: int, seed: int):
    import numpy as np

    rng = np.random.default_rng([seed, start])
    chunk = rng.standard_normal((count, dim), dtype=np.float32)
    return chunk / np.linalg.norm(chunk, axis=1, keepdims=True)


def records(total: int, dim: int, seed: int, first: int = 0):
    from mmtools.records import encode_vector

    for start in range(first, first + total, CHUNK):
        count = min(CHUNK, first + total - start)
        for i, vector in zip(range(start, start + count), vectors(start, count, dim, seed)):
            name = f"photos/{i // 1000:04d}/IMG_{i:07d}.jpg"
            yield {"id": name, "path": name, "file_size": 2_345_678, "embedding": encode_vector(vector),
                   "embedding_model": "m"}


def written() -> int:
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("wchar"))


def step(name: str, args: argparse.Namespace) -> dict:
    """One measured step, in this (child) process."""
    import numpy as np

    from mmtools.index import IndexReader, index_records, merging

    path = Path(args.index)
    before, started = written(), time.perf_counter()
    if name == "build":
        if args.segments > 1:  # the same records in N segments (a write seals one past this size)
            merging.segment_limit = lambda dim, n=-(-args.records // args.segments): n
        index_records(records(args.records, args.dim, seed=0), path, kind=args.kind)
    elif name in ("replace", "replace_with_centroids"):
        if name == "replace_with_centroids":  # the baseline: every IVF segment repeats the centroids
            import contextlib

            from mmtools.index import segments

            segments._centroids_left_out = lambda index: contextlib.nullcontext()
        index_records(records(args.replace, args.dim, seed=1, first=args.first), path)
    elif name == "rewrite":
        import faiss

        with IndexReader(path) as reader:  # the whole index into memory, as a format-2 write did
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))
            live = [row for (row,) in reader.connection.execute("SELECT row FROM items ORDER BY row")]
            for row_start in range(0, len(live), 65_536):
                rows = live[row_start:row_start + 65_536]
                index.add_with_ids(reader.vectors_of(rows), np.asarray(rows, dtype=np.int64))
        loaded = time.perf_counter()
        changed = np.arange(args.first, args.first + args.replace, dtype=np.int64)
        index.remove_ids(changed)
        index.add_with_ids(vectors(args.first, args.replace, args.dim, seed=1), changed + 10**9)
        out = path.parent / "rewrite"
        out.mkdir(exist_ok=True)
        faiss.write_index(index, str(out / "idx.faiss"))
        shutil.copyfile(f"{path}.meta.sqlite", out / "idx.faiss.meta.sqlite")
        started += loaded - started  # the load is reading, not writing: time the rewrite itself
    elif name == "compact":
        index_records([], path, compact=True)
    elif name == "bare":
        import faiss

        index = faiss.IndexIDMap2(faiss.IndexFlatIP(args.dim))
        index.add_with_ids(vectors(args.first, args.replace, args.dim, seed=1),
                           np.arange(args.replace, dtype=np.int64))
        faiss.write_index(index, str(path.parent / "bare.faiss"))
    elif name == "search":
        queries = vectors(0, 100, args.dim, seed=0) + 0.05 * vectors(0, 100, args.dim, seed=7)
        with IndexReader(path) as reader:
            reader.search(queries[:5], k=10)  # warm: pages in, lazily built structures
            times = []
            for _ in range(5):
                start = time.perf_counter()
                hits = reader.search(queries, k=10)
                times.append(time.perf_counter() - start)
            found = sum(h[0].id == f"photos/{i // 1000:04d}/IMG_{i:07d}.jpg" for i, h in enumerate(hits))
            return {"seconds": sorted(times)[2], "segments": reader.segment_count, "found": found}
    result = {"seconds": time.perf_counter() - started, "bytes": written() - before,
              "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if name.startswith("replace"):
        with IndexReader(path) as reader:
            new = vectors(args.first, args.replace, args.dim, seed=1)
            hits = reader.search(new, k=1)
            result["count"] = reader.info.count
            result["found_new"] = sum(h[0].id == f"photos/{i // 1000:04d}/IMG_{i:07d}.jpg"
                                      for i, h in zip(range(args.first, args.first + args.replace), hits))
    return result


def run(name: str, index: Path, args: argparse.Namespace, **extra) -> dict:
    options = {**vars(args), **extra, "index": str(index)}
    command = [sys.executable, __file__, "--step", name] + [
        f"--{k.replace('_', '-')}={v}" for k, v in options.items() if k not in ("step", "bench_1m") and v is not None]
    out = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if out.returncode != 0:
        sys.exit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def index_bytes(index: Path) -> int:
    total = Path(index).stat().st_size + Path(f"{index}.meta.sqlite").stat().st_size
    return total + sum(p.stat().st_size for p in Path(f"{index}.segments").iterdir())


def ivf_rows(index: Path, size: int, build: dict, args: argparse.Namespace) -> list[Row]:
    """IVF kinds: the replacement against the same one into a copy whose segments repeat the centroids."""
    copy = index.parent / "copy" / index.name
    copy.parent.mkdir()
    shutil.copyfile(index, copy)
    shutil.copyfile(f"{index}.meta.sqlite", f"{copy}.meta.sqlite")
    shutil.copytree(f"{index}.segments", f"{copy}.segments")
    replace = run("replace", index, args)
    repeated = run("replace_with_centroids", copy, args)
    print(f"replace: {json.dumps(replace)}\nreplace, centroids repeated: {json.dumps(repeated)}")
    case = f"{args.kind}: replace {args.replace} of {args.records:,}"
    return [
        Row("index_segments", f"{case}: bytes written vs centroids repeated", replace["bytes"] / 2**20,
            repeated["bytes"] / 2**20, "MiB", higher_is_better=False, target="≤ 2% of the index",
            ok=replace["bytes"] <= 0.02 * size),
        Row("index_segments", f"{case}: seconds vs centroids repeated", replace["seconds"], repeated["seconds"],
            "s", higher_is_better=False, target="≤ 0.15× the build",
            ok=replace["seconds"] <= 0.15 * build["seconds"]),
        Row("index_segments", f"{case}: records after ({replace['found_new']} new vectors found)", replace["count"],
            None, "", target=f"{args.records:,}, {args.replace} found",
            ok=replace["count"] == args.records and replace["found_new"] == args.replace),
        Row("index_segments", f"build {args.records:,} ({args.kind})", build["seconds"], None, "s",
            higher_is_better=False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--replace", type=int, default=100)
    parser.add_argument("--first", type=int, default=5_000, help="first record replaced")
    parser.add_argument("--search-segments", type=int, default=8)
    parser.add_argument("--segments", type=int, default=1)
    parser.add_argument("--kind", default="flat", choices=("flat", "hnsw", "ivf", "ivfpq"))
    parser.add_argument("--step")
    parser.add_argument("--index")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args)))
        return
    print(machine())
    print(f"{args.records:,} records of {args.dim} dimensions ({args.kind}); replacing {args.replace}")
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        index = Path(tmp) / "idx.faiss"
        build = run("build", index, args)
        size = index_bytes(index)
        print(f"build: {build['seconds']:.1f} s, {build['bytes'] / 2**20:,.0f} MiB written, peak "
              f"{build['peak_mb']:,.0f} MiB; index {size / 2**20:,.0f} MiB")
        if args.kind in ("ivf", "ivfpq"):
            rows += ivf_rows(index, size, build, args)
            print_table(rows, "Segment writes")
            return
        replace = run("replace", index, args)
        rewrite = run("rewrite", index, args)
        bare = run("bare", index, args)
        print(f"replace: {json.dumps(replace)}\nrewrite: {json.dumps(rewrite)}\nbare FAISS: {json.dumps(bare)}")
        case = f"replace {args.replace} of {args.records:,}"
        rows += [
            Row("index_segments", f"{case}: bytes written vs rewrite", replace["bytes"] / 2**20,
                rewrite["bytes"] / 2**20, "MiB", higher_is_better=False,
                target="≤ 2% of the index", ok=replace["bytes"] <= 0.02 * size),
            Row("index_segments", f"{case}: seconds vs rewrite", replace["seconds"], rewrite["seconds"], "s",
                higher_is_better=False, target="≤ 0.15× the build", ok=replace["seconds"] <= 0.15 * build["seconds"]),
            Row("index_segments", f"{case}: seconds vs bare FAISS add", replace["seconds"], bare["seconds"], "s",
                higher_is_better=False),
            Row("index_segments", f"{case}: peak memory vs rewrite", replace["peak_mb"], rewrite["peak_mb"], "MiB",
                higher_is_better=False),
            Row("index_segments", f"{case}: records after, new found", replace["count"], replace["found_new"], "",
                target=f"{args.records:,}, {args.replace}",
                ok=replace["count"] == args.records and replace["found_new"] == args.replace),
        ]
        run("compact", index, args)  # the replaced records' segment merged: one segment
        one = run("search", index, args)
        if args.search_segments > 1:
            shutil.rmtree(f"{index}.segments")
            for name in (index, Path(f"{index}.meta.sqlite")):
                name.unlink()
            run("build", index, args, segments=args.search_segments)
            many = run("search", index, args)
            print(f"search: 1 segment {json.dumps(one)}; {many['segments']} segments {json.dumps(many)}")
            rows.append(Row("index_segments", f"search 100 queries, {many['segments']} segments vs 1",
                            many["seconds"] * 1000, one["seconds"] * 1000, "ms", higher_is_better=False,
                            target="≤ 1.2×", ok=many["seconds"] <= 1.2 * one["seconds"]))
        rows.append(Row("index_segments", f"build {args.records:,}", build["seconds"], None, "s",
                        higher_is_better=False))
    print_table(rows, "Segment writes")


if __name__ == "__main__":
    main()
