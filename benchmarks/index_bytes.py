"""Bytes per vector of each index kind, on disk and in memory when searching, measured.

    .venv/bin/python benchmarks/index_bytes.py [--vectors 10000] [--dim 768]

Builds each kind with default parameters from the same random unit vectors (records shaped like
embed-images output: id, path, file facts) and prints, per vector: the FAISS file, the metadata file, and
what a search process holds in memory after opening the index and running one query (flat and ivfpq
open memory-mapped, so only the pages touched count; hnsw and ivf are read whole). The plain baseline is raw float32: 4 × dim bytes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()
    import numpy as np

    from mmtools.index import KINDS, index_records, metadata_path
    from mmtools.records import encode_vector

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.vectors, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    def records():
        for i, vector in enumerate(vectors):
            name = f"photos/{i // 1000:03d}/IMG_{i:06d}.jpg"
            yield {"id": name, "path": name, "file_size": 2_345_678, "file_mtime": 1764547200.123456,
                   "sha256": f"{i:064x}", "embedding": encode_vector(vector), "embedding_model": "m",
                   "embedding_kind": "image"}

    print(f"{args.vectors} vectors of {args.dim} dimensions; raw float32 = {4 * args.dim} bytes a vector")
    print(f"{'kind':6} {'FAISS file':>11} {'metadata':>9} {'search RSS':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            path = Path(tmp) / f"{kind}.faiss"
            index_records(records(), path, kind=kind)
            faiss_bytes = path.stat().st_size / args.vectors
            meta_bytes = metadata_path(path).stat().st_size / args.vectors
            rss = _search_rss(path) / args.vectors
            print(f"{kind:6} {faiss_bytes:11,.0f} {meta_bytes:9,.0f} {rss:11,.0f}")


def _search_rss(path: Path) -> float:
    """Growth of resident memory (bytes) when a fresh process opens the index and runs one query."""
    code = ("import numpy as np, faiss\nfrom mmtools.index import IndexReader\n"
            "def rss():\n    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
            f"before = rss()\nr = IndexReader({str(path)!r})\nq = np.ones((1, r.info.dim), 'float32')\n"
            "r.search(q, 10)\nprint(rss() - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        sys.exit(out.stderr)
    return float(out.stdout.strip())


if __name__ == "__main__":
    main()
