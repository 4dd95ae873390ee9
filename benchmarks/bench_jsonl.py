"""JSONL records/s, reading and writing 768-d embedding records: mmtools.records vs the standard json module.

    python benchmarks/bench_jsonl.py [--records 20000]

mmtools writes embeddings as base64 of little-endian float32 (the default) or as lists, with orjson
(``RecordWriter``, ``encode_vector``), and reads them with ``read_records`` + ``decode_vector``. The baseline
is what a script would do with the standard library: ``json.dumps`` of the record with the vector as a list
of floats, and ``json.loads`` + ``numpy.asarray`` to read it back. Files go to a temporary folder (page cache).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from common import Row, machine, median, print_table, timed

DIM = 768


def run(count: int = 20_000) -> list[Row]:
    import numpy as np

    from mmtools.records import RecordWriter, decode_vector, encode_vector, read_records

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    base = [{"id": f"photos/{i:07d}.jpg", "path": f"photos/{i:07d}.jpg", "embedding_model": "google/siglip2-base",
             "embedding_kind": "image"} for i in range(count)]
    work = Path(tempfile.mkdtemp(prefix="mmtools-bench-jsonl-"))
    rows = []
    try:
        def write_mmtools(fmt: str) -> None:
            with open(work / f"{fmt}.jsonl", "wb") as stream:
                writer = RecordWriter(stream)
                for record, vector in zip(base, vectors):
                    writer.write({**record, "embedding": encode_vector(vector, fmt)})

        def write_json() -> None:
            with open(work / "json.jsonl", "w") as stream:
                for record, vector in zip(base, vectors):
                    stream.write(json.dumps({**record, "embedding": vector.tolist()}) + "\n")

        def read_mmtools(fmt: str) -> None:
            for record in read_records([str(work / f"{fmt}.jsonl")]):
                decode_vector(record["embedding"])

        def read_json() -> None:
            with open(work / "json.jsonl") as stream:
                for line in stream:
                    np.asarray(json.loads(line)["embedding"], dtype=np.float32)

        baseline_write = count / median(timed(write_json, repeat=2, warmup=0))
        baseline_read = count / median(timed(read_json, repeat=2, warmup=0))
        for fmt in ("base64", "list"):
            rate = count / median(timed(lambda: write_mmtools(fmt), repeat=2, warmup=0))
            rows.append(Row("JSONL write", f"{DIM}-d, {fmt} (vs json, list)", rate, baseline_write, "records/s"))
            rate = count / median(timed(lambda: read_mmtools(fmt), repeat=2, warmup=0))
            rows.append(Row("JSONL read", f"{DIM}-d, {fmt} (vs json, list)", rate, baseline_read, "records/s"))
        size = (work / "base64.jsonl").stat().st_size / count
        plain = (work / "json.jsonl").stat().st_size / count
        rows.append(Row("JSONL size", f"{DIM}-d record, base64 (vs json, list)", size, plain, "bytes",
                        higher_is_better=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    print(f"# JSONL benchmark\n\n{machine()}")
    print_table(run(args.records))


if __name__ == "__main__":
    main()
