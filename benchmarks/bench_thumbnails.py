"""What the web page's pictures cost: GET /thumb (made once, then from the cache) against sending the photo itself.

    python benchmarks/bench_thumbnails.py [--photos 100]

Real photos (../shared/data/vi-photos), an index of their records (made-up vectors: no model is involved in
serving pictures), the HTTP app in process (starlette's TestClient, so the figures are the server's work, not
the network's). In the same run: the first /thumb of each photo (decode, shrink, JPEG, write to the cache), the
second (from the cache, with its ETag), a revalidation (If-None-Match: 304), and the baseline, /image (the photo
as it is, what a page without thumbnails would load); then the bytes a page of 20 results weighs either way.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import Row, machine, median, print_table, shared_data


def run(photos: int = 100) -> list[Row]:
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="mmtools-bench-thumbs-") as work:
        os.environ["MMTOOLS_CACHE_DIR"] = str(Path(work) / "cache")
        from starlette.testclient import TestClient

        from mmtools.index import index_records
        from mmtools.records import encode_vector
        from mmtools.serve.engine import Engine
        from mmtools.serve.http import create_app

        files = sorted((shared_data("vi-photos", "images")).glob("*.jpg"))[:photos]
        rng = np.random.default_rng(0)
        records = []
        for i, path in enumerate(files):
            vector = rng.normal(size=8).astype(np.float32)
            records.append({"id": f"p{i}", "path": str(path), "embedding_model": "made-up",
                            "embedding": encode_vector(vector / np.linalg.norm(vector))})
        index_records(records, Path(work) / "idx.faiss")
        engine = Engine(indexes=[str(Path(work) / "idx.faiss")])
        http = TestClient(create_app(engine))

        def each(path: str, headers: dict | None = None) -> tuple[list[float], list[int]]:
            times, sizes = [], []
            for record in records:
                start = time.perf_counter()
                answer = http.get(f"/{path}/{record['id']}", headers=headers or {})
                times.append(time.perf_counter() - start)
                assert answer.status_code in (200, 304), answer.text
                sizes.append(len(answer.content))
            return times, sizes

        originals, original_sizes = each("image")
        first, thumb_sizes = each("thumb")
        cached, _ = each("thumb")
        etag = http.get(f"/thumb/{records[0]['id']}").headers["etag"]
        revalidated = [each("thumb", {"If-None-Match": etag})[0][0] for _ in range(20)]
        engine.close()
    ms = 1000.0
    page = 20
    rows = [
        Row("web pictures", "first /thumb (made and cached) vs /image", median(first) * ms, median(originals) * ms,
            "ms", higher_is_better=False),
        Row("web pictures", "cached /thumb vs /image", median(cached) * ms, median(originals) * ms, "ms",
            higher_is_better=False),
        Row("web pictures", "revalidated /thumb (304) vs /image", median(revalidated) * ms, median(originals) * ms,
            "ms", higher_is_better=False),
        Row("web pictures", f"a page of {page} results: thumbnails vs photos",
            sum(thumb_sizes[:page]) / 1024, sum(original_sizes[:page]) / 1024, "KiB",
            higher_is_better=False),
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    print(machine())
    print_table(run(args.photos), f"Web page pictures, {args.photos} photos")


if __name__ == "__main__":
    main()
