"""Bytes per vector of each index kind, on disk and in memory when searching, measured.

    .venv/bin/python benchmarks/index_bytes.py [--vectors 10000] [--dim 768]

Builds each kind with default parameters from the same random unit vectors (records shaped like
embed-images output: id, path, file facts) and prints, per vector: the FAISS file, the metadata file, and
what a search process holds in memory for the FAISS side (flat and ivfpq open memory-mapped, so their
pages are loaded on demand; hnsw and ivf are read whole). The plain baseline is raw float32: 4 × dim bytes.
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
    print(f"{'kind':6} {'FAISS file':>11} {'metadata':>9} {'search RSS (FAISS side)':>24}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            path = Path(tmp) / f"{kind}.faiss"
            index_records(records(), path, kind=kind)
            faiss_bytes = path.stat().st_size / args.vectors
            meta_bytes = metadata_path(path).stat().st_size / args.vectors
            rss = _search_rss(path) / args.vectors
            print(f"{kind:6} {faiss_bytes:11,.0f} {meta_bytes:9,.0f} {rss:24,.0f}")


def _search_rss(path: Path) -> float:
    """Growth of max RSS (bytes) when a fresh process opens the index and runs one query."""
    code = ("import resource, numpy as np\nfrom mmtools.index import IndexReader\n"
            "import faiss\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"r = IndexReader({str(path)!r})\nq = np.ones((1, r.info.dim), 'float32')\nr.search(q, 10)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    return float(out.stdout.strip() or 0)


if __name__ == "__main__":
    main()
