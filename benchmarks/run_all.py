"""Every benchmark in one run, one table: mmtools against a plain baseline measured in the same run.

    python benchmarks/run_all.py            # a few minutes on 2 cores
    python benchmarks/run_all.py --large    # 100k and 1M vectors for both index kinds, full embed-images run
    python benchmarks/run_all.py --only index,jsonl

Parts: embed-images (benchmarks/embed_images.py, run as its own process and read back), runtime (the default
model's image tower on a CPU: PyTorch eager, ONNX fp32 and int8, `mmtools embed-images` end to end against
`--runtime torch`, the decode-only and decode-and-model bounds; benchmarks/runtime.py --only images), embed-texts
(bench_texts.py), index build/search/recall/update (bench_index.py), JSONL (bench_jsonl.py), start-up and the
warm server (bench_serve.py), the keyword channel on Milvus Lite against FTS5 (keyword_milvus.py), and the GPU
path (gpu_embed.py: SigLIP 2 base at batch 256 in fp16 against the decode bound; says "skipped" without a GPU). Each part's own script runs alone too, with more options. Figures on a shared, busy machine drift by ±10% or more between
runs: read the ratios, and the load average printed with the machine.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from common import REPO, Row, machine, print_table, shared_data

PARTS = ("images", "runtime", "texts", "index", "jsonl", "serve", "keyword", "gpu")


def embed_images_rows(large: bool) -> list[Row]:
    args = [] if large else ["--images", "48", "--rounds", "1", "--architectures", "vit-s16",
                             "--skip", "decode,memory,help", "--quiet-wait", "5"]
    images = str(shared_data("vi-photos", "images"))
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "embed_images.py"), images, *args],
                            capture_output=True, text=True)
    rates: dict[tuple[str, str], float] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+)\s+(bound|plain|pipeline)\s+([\d.]+)\s+([\d.]+)", line)
        if match:
            rates[(match.group(1), match.group(2))] = float(match.group(3))
    rows = []
    for architecture in dict.fromkeys(a for a, _ in rates):
        pipeline, plain, bound = (rates.get((architecture, m)) for m in ("pipeline", "plain", "bound"))
        rows.append(Row("embed-images", f"{architecture}, pipeline vs plain loop (steady)", pipeline, plain,
                        "images/s", target="≥ plain loop", ok=pipeline is not None and plain is not None
                        and pipeline >= plain))
        rows.append(Row("embed-images", f"{architecture}, pipeline vs model-only bound", pipeline, bound,
                        "images/s", target="within 15% of bound", ok=bool(pipeline and bound and
                                                                        pipeline >= 0.85 * bound)))
    if not rows:
        print(f"embed_images.py gave no figures:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", action="store_true", help="the big sizes (a big machine; hours on 2 cores)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"parts to run [{','.join(PARTS)}]")
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    print(f"# mmtools benchmarks\n\n{machine()}\n")
    rows: list[Row] = []
    failed = []
    for part in parts:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}")
        start = time.perf_counter()
        print(f"running {part}...", file=sys.stderr, flush=True)
        try:
            rows += run_part(part, args.large)
        except Exception as exc:  # one broken part must not cost the others' figures
            import traceback

            traceback.print_exc()
            failed.append(f"{part}: {type(exc).__name__}: {exc}")
        print(f"  {part}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    for failure in failed:
        print(f"FAILED part {failure}")
    return 1 if failed else 0


def run_part(part: str, large: bool) -> list[Row]:
    """The rows of one part of the run."""
    rows: list[Row] = []
    if part == "images":
        rows += embed_images_rows(large)
    elif part == "runtime":
        from runtime import run_images

        rows += run_images(images=48 if large else 16, rounds=3)
    elif part == "texts":
        from bench_texts import run

        rows += run(["vit-s16", "siglip2-base"], 3072 if large else 1024, 512 if large else 64)
    elif part == "index":
        from bench_index import run

        rows += run([100_000, 1_000_000] if large else [100_000],
                    [100_000, 1_000_000] if large else [20_000], ef_construction=200 if large else 40)
    elif part == "jsonl":
        from bench_jsonl import run

        rows += run(50_000 if large else 10_000)
    elif part == "serve":
        from bench_serve import run

        rows += run(10_000, ("siglip-tiny", "siglip2-base"), 40 if large else 12)
    elif part == "keyword":
        from keyword_milvus import run

        rows += run()
    elif part == "gpu":
        from gpu_embed import run

        rows += run()
    return rows




if __name__ == "__main__":
    sys.exit(main())
