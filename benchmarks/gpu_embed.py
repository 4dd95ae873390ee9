"""GPU throughput: SigLIP 2 base images/s end to end from JPEG files, against the decode bound.

    python benchmarks/gpu_embed.py [IMAGES_DIR] [--images 4096] [--batch 256] [--model DIR]
    python benchmarks/gpu_embed.py --cpu-smoke          # no GPU: the same code, on the CPU, 8 photos, batch 4

End to end means ``embed_images(discover_images([folder]), encoder, batch_size=256)`` with every record
consumed: file reading, JPEG decoding (on the GPU with torchvision's nvjpeg when installed, else Pillow in
threads), resizing, normalising, the forward pass in float16 (what mmtools runs on CUDA), and the records with
their base64 vectors. Beside it, in the same run, the decode bound: the same files decoded and preprocessed by
the pipeline's own decoding (same threads, same batches) with no model at all; the pipeline cannot beat it.
A random SigLIP 2 base/16 is built unless ``--model`` names a model directory (same cost, vectors meaningless).

Without CUDA it says so and exits 0 having measured nothing (run_all's "gpu" part), unless ``--cpu-smoke``:
then a small batch runs on the CPU through the same code, as a check that the script works before a GPU is
lent. Goal (issue 32): ≥ 4,000 images/s on one H100, near the decode bound.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import Row, machine, print_table, shared_data

DEFAULT_IMAGES = shared_data("vi-photos", "images")
GOAL = 4000.0


def run(images_dir: str = str(DEFAULT_IMAGES), count: int = 4096, batch: int = 256,
        architecture: str = "siglip2-base", model: str | None = None, cpu_smoke: bool = False) -> list[Row]:
    try:
        import torch
    except ImportError:
        print("gpu_embed: skipped: torch is not installed")
        return []
    cuda = torch.cuda.is_available()
    if not cuda and not cpu_smoke:
        print("gpu_embed: skipped: no CUDA GPU on this machine, nothing measured (run it on a GPU machine, or "
              "with --cpu-smoke to check the script on the CPU)")
        return []
    if cpu_smoke:
        count, batch = min(count, 8), min(batch, 4)
    device = "cuda" if cuda and not cpu_smoke else "cpu"

    from mmtools import gpu
    from mmtools.embed import _decode_batch, default_workers, embed_images
    from mmtools.images import discover_images, walk_images
    from mmtools.models import load_encoder
    from mmtools.models.synthetic import build_random_model

    sources = [p for p in walk_images(images_dir) if p.lower().endswith((".jpg", ".jpeg"))]
    if not sources:
        raise SystemExit(f"gpu_embed: no JPEG files in {images_dir}")
    work = Path(tempfile.mkdtemp(prefix="mmtools-bench-gpu-"))
    try:
        folder = work / "jpegs"
        folder.mkdir()
        for i in range(count):  # links: the page cache holds each photo once
            os.symlink(os.path.abspath(sources[i % len(sources)]), folder / f"{i:06d}.jpg")
        started = time.perf_counter()
        directory = model or str(build_random_model(work / "model", architecture))
        encoder = load_encoder(directory, device, "torch")  # CUDA: float16
        print(f"gpu_embed: {architecture} on {device} ({getattr(encoder, 'precision', 'fp16 on CUDA')}), loaded in "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
        decoder = gpu.jpeg_decoder(encoder)
        where = "GPU (nvjpeg)" if decoder else "CPU (Pillow, threads)"
        workers = default_workers(model_on_cpu=device == "cpu")
        files = sorted(str(p) for p in folder.iterdir())
        list(embed_images(discover_images(files[:2 * batch]), encoder, batch_size=batch))  # kernels, page cache
        synchronise = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        # The decode bound: the pipeline's decoding alone, in the same threads and batches.
        from concurrent.futures import ThreadPoolExecutor

        listed = list(discover_images([str(folder)]))
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            decoded = sum(len(d.sources) for d in pool.map(
                lambda group: _decode_batch(group, encoder, 100_000_000, None, decoder),
                [listed[i:i + batch] for i in range(0, len(listed), batch)]))
        synchronise()
        bound = decoded / (time.perf_counter() - start)

        synchronise()
        start = time.perf_counter()
        done = sum(1 for _ in embed_images(discover_images([str(folder)]), encoder, batch_size=batch,
                                           workers=workers))
        synchronise()
        ours = done / (time.perf_counter() - start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    case = f"{architecture}, {done} JPEGs, batch {batch}, {'fp16' if device == 'cuda' else 'fp32'}, decode on {where}"
    if device == "cpu":
        return [Row("GPU embed (CPU smoke)", case + ", vs decode bound", ours, bound, "images/s",
                    target="runs (a smoke check, not a measurement)", ok=done == count)]
    return [Row("GPU embed", case + ", vs decode bound", ours, bound, "images/s", target="near the bound"),
            Row("GPU embed", case + ", vs the goal", ours, GOAL, "images/s", target=f"≥ {GOAL:,.0f}/s on an H100",
                ok=ours >= GOAL)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images_dir", nargs="?", default=str(DEFAULT_IMAGES))
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--architecture", default="siglip2-base", help="of the random model built")
    parser.add_argument("--model", help="a model directory to use instead of building a random one")
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: run 8 photos at batch 4 on the CPU")
    args = parser.parse_args()
    print(f"# GPU embedding benchmark\n\n{machine()}")
    rows = run(args.images_dir, args.images, args.batch, args.architecture, args.model, args.cpu_smoke)
    if rows:
        print_table(rows)
    return 0 if all(row.ok is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
