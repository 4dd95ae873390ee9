"""Start-up and the warm server: `mmtools --help`, cold vs warm `mmtools search`, POST /search, throughput.

    python benchmarks/bench_serve.py [--records 10000] [--architecture siglip2-base] [--runs 20]

A 10k-record index (random unit vectors, labelled with a random SigLIP 2 base model, so the query's text
encoding costs what the real model's does). In the same run:

Twice: with a tiny model (what the tool costs: start-up, socket, search, records) and with a real-size one
(which adds the text tower's forward pass, most of a warm query's time on a CPU). Each time:

* ``mmtools --help`` (best of 5, once);
* cold ``mmtools search "..."`` (no server: MMTOOLS_SERVER=off), end to end, and broken down in a probe process:
  imports, model load, query (encode + search + records);
* warm ``mmtools search "..."`` with ``mmtools serve`` running: end to end (median of N runs, a new query text
  each time), broken down: bare interpreter start, client imports, socket round trip;
* ``POST /search`` (JSON, keep-alive HTTP client): median latency;
* throughput: requests/s with 1 client and with 8 concurrent clients (concurrent requests share forward
  passes through the micro-batcher).

Targets (issue 9): warm search under 100 ms median; POST /search under 20 ms median.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import REPO, Row, machine, median, print_table

CLI = Path(sys.executable).parent / "mmtools"
QUERIES = ["xe hơi màu đỏ", "con mèo nằm trên ghế", "bãi biển lúc hoàng hôn", "phố cổ Hà Nội", "đĩa phở bò",
           "trẻ em chơi bóng", "chợ nổi miền Tây", "núi và ruộng bậc thang", "cà phê sữa đá", "người bán hoa"]


def env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", **extra}


def wall(command: list[str], **extra: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env(**extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def build_index(work: Path, architecture: str, records: int) -> tuple[Path, str]:
    import numpy as np

    from mmtools.index import IndexWriter
    from mmtools.models.synthetic import build_random_model

    from mmtools.models import default_cache, load_encoder

    model = str(build_random_model(work / architecture, architecture))
    dim = load_encoder(model, "cpu").dim
    default_cache.clear()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((records, dim), dtype=np.float32)
    path = work / "idx.faiss"
    with IndexWriter(path, model=model) as writer:
        for i, vector in enumerate(vectors):
            writer.add(f"photos/{i:06d}.jpg", vector, {"path": f"photos/{i:06d}.jpg"}, model=model)
    return path, model


PROBE = r"""
import sys, time, json
t0 = time.perf_counter()
import mmtools.cli.app, torch, transformers, faiss
from mmtools.index import IndexReader
from mmtools.models import load_encoder
from mmtools.search import Query, search
t1 = time.perf_counter()
reader = IndexReader(sys.argv[1])
encoder = load_encoder(reader.info.model, "cpu")
encoder.dim
t2 = time.perf_counter()
hits = list(search(reader, [Query("q1", text=sys.argv[2])], lambda: encoder, k=10))
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "model": t2 - t1, "query": t3 - t2}))
"""


def run(records: int = 10_000, architectures: tuple[str, ...] = ("siglip-tiny", "siglip2-base"),
        runs: int = 20) -> list[Row]:
    """The tiny model shows what the tool itself costs (its forward pass is negligible); a real-size model
    adds its text encoding, which on a CPU is most of a warm query's time."""
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="mmtools-bench-serve-"))
    try:
        helps = [wall([str(CLI), "--help"]) for _ in range(5)]
        rows.append(Row("start-up", "mmtools --help (best of 5)", min(helps) * 1000, None, "ms",
                        higher_is_better=False, target="< 300 ms", ok=min(helps) < 0.3))
        bare = [wall([sys.executable, "-c", "pass"]) for _ in range(5)]
        imports = [wall([sys.executable, "-c", "import mmtools.cli, mmtools.cli.fast, mmtools.serve.client"])
                   for _ in range(5)]
        rows.append(Row("start-up", "warm search: interpreter start", median(bare) * 1000, None, "ms", False))
        rows.append(Row("start-up", "warm search: client imports", (median(imports) - median(bare)) * 1000,
                        None, "ms", False))
        for architecture in architectures:
            real = architecture != "siglip-tiny"
            rows += _run_one(work / architecture, records, architecture, runs if not real else max(3, runs // 4),
                             cold=real)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _run_one(work: Path, records: int, architecture: str, runs: int, cold: bool) -> list[Row]:
    import json

    import httpx

    work.mkdir(parents=True)
    rows: list[Row] = []
    index, _model = build_index(work, architecture, records)
    search = [str(CLI), "search", "-i", str(index), "-k", "10"]
    label = f"{architecture}, {records:,} records"
    cold_times = None
    if cold:
        cold_times = [wall(search + [QUERIES[i]], MMTOOLS_SERVER="off") for i in range(2)]
        probe = json.loads(subprocess.run([sys.executable, "-c", PROBE, str(index), QUERIES[0]], env=env(),
                                          capture_output=True, text=True, check=True).stdout)
        for part in ("imports", "model", "query"):
            rows.append(Row("start-up", f"cold search ({architecture}): {part}", probe[part] * 1000, None, "ms",
                            False))
    sock = work / "s.sock"
    server = subprocess.Popen([str(CLI), "serve", "--socket", str(sock), "-i", str(index), "--http",
                               "127.0.0.1:0"], env=env(), stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        if "listening" not in line:
            raise RuntimeError(f"server did not start: {line}{server.stderr.read()}")
        url = line.split(" and ")[1].split(" ")[0]
        threading.Thread(target=server.stderr.read, daemon=True).start()
        wall(search + ["khởi động"], MMTOOLS_SERVER=str(sock))
        warm = [wall(search + [f"{QUERIES[i % 10]} {i}"], MMTOOLS_SERVER=str(sock)) for i in range(runs)]
        rows.append(Row("search", f"warm, end to end ({label}), median", median(warm) * 1000,
                        median(cold_times) * 1000 if cold_times else None, "ms", False,
                        target="< 100 ms" + (" (baseline: cold)" if cold_times else ""), ok=median(warm) < 0.1))
        with httpx.Client(base_url=url, timeout=120) as http:
            latencies = []
            for i in range(runs * 2):
                start = time.perf_counter()
                http.post("/search", json={"query": f"{QUERIES[i % 10]} #{i}", "k": 10}).raise_for_status()
                latencies.append(time.perf_counter() - start)
        rows.append(Row("serve HTTP", f"POST /search ({label}), median", median(latencies) * 1000, None, "ms",
                        False, target="< 20 ms", ok=median(latencies) < 0.02))

        def clients(count: int, each: int) -> float:
            def client(n: int) -> None:
                with httpx.Client(base_url=url, timeout=300) as http:
                    for i in range(each):
                        http.post("/search", json={"query": f"{QUERIES[(n + i) % 10]} c{n}-{i}", "k": 10})

            threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return count * each / (time.perf_counter() - start)

        one = clients(1, runs)
        eight = clients(8, max(2, runs // 2))
        rows.append(Row("serve HTTP", f"throughput, 8 concurrent clients vs 1 ({architecture})", eight, one,
                        "requests/s", target="reported"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--architectures", default="siglip-tiny,siglip2-base")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"# Start-up and server benchmark\n\n{machine()}")
    print_table(run(args.records, tuple(args.architectures.split(",")), args.runs))


if __name__ == "__main__":
    main()
