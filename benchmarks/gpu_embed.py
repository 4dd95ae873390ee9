"""GPU throughput: SigLIP 2 base images/s end to end from JPEG files (goal: ≥ 4,000/s on one H100).

    python benchmarks/gpu_embed.py [IMAGES_DIR] [--images 8192] [--architecture siglip2-base]

End to end means ``embed_images(discover_images([folder]), encoder)`` with every record consumed: file reading,
JPEG decoding (on the GPU with torchvision's nvjpeg when installed, else Pillow in threads), resizing,
normalising, the forward pass in float16, and the records with their base64 vectors. The batch size is the
automatic one (from free GPU memory). Baseline in the same run: a plain loop (Pillow decode, the Hugging
Face processor, the model) over a tenth of the images. Without a CUDA GPU it says so and measures nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import Row, machine, print_table, shared_data

DEFAULT_IMAGES = shared_data("vi-photos", "images")
GOAL = 4000.0


def run(images_dir: str = str(DEFAULT_IMAGES), count: int = 8192, architecture: str = "siglip2-base") -> list[Row]:
    try:
        import torch
    except ImportError:
        print("no GPU: torch is not installed")
        return []
    if not torch.cuda.is_available():
        print("no GPU: CUDA is not available on this machine; nothing measured (run this on a GPU machine)")
        return []
    from mmtools import gpu
    from mmtools.embed import embed_images
    from mmtools.images import discover_images, walk_images
    from mmtools.models import load_encoder
    from mmtools.models.synthetic import build_random_model

    sources = [p for p in walk_images(images_dir) if p.lower().endswith((".jpg", ".jpeg"))]
    if not sources:
        raise SystemExit(f"no JPEG files in {images_dir}")
    work = Path(tempfile.mkdtemp(prefix="mmtools-bench-gpu-"))
    rows = []
    try:
        folder = work / "jpegs"
        folder.mkdir()
        for i in range(count):  # links: the page cache holds each photo once
            os.symlink(os.path.abspath(sources[i % len(sources)]), folder / f"{i:06d}.jpg")
        encoder = load_encoder(str(build_random_model(work / "model", architecture)), "cuda")
        decoder = "GPU (nvjpeg)" if gpu.jpeg_decoder(encoder) else "CPU (Pillow, threads)"
        batch = gpu.auto_image_batch_size(encoder, default=256)
        warm_up = sorted(str(p) for p in folder.iterdir())[:2 * batch]
        list(embed_images(discover_images(warm_up), encoder, batch_size=batch))  # kernels, page cache
        torch.cuda.synchronize()
        start = time.perf_counter()
        done = sum(1 for _ in embed_images(discover_images([str(folder)]), encoder, batch_size=batch))
        torch.cuda.synchronize()
        ours = done / (time.perf_counter() - start)

        from PIL import Image

        plain_paths = sorted(str(p) for p in folder.iterdir())[:max(batch, count // 10)]
        start = time.perf_counter()
        for i in range(0, len(plain_paths), batch):
            images = [Image.open(p).convert("RGB") for p in plain_paths[i:i + batch]]
            pixels = encoder.image_processor(images=images, return_tensors="pt")
            encoder.encode_image_batch(pixels)
        torch.cuda.synchronize()
        plain = len(plain_paths) / (time.perf_counter() - start)
        rows.append(Row("GPU embed-images", f"{architecture}, {count} JPEGs, batch {batch}, decode on {decoder}",
                        ours, plain, "images/s", target=f"≥ {GOAL:,.0f}/s on an H100", ok=ours >= GOAL))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images_dir", nargs="?", default=str(DEFAULT_IMAGES))
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--architecture", default="siglip2-base")
    args = parser.parse_args()
    print(f"# GPU embedding benchmark\n\n{machine()}")
    rows = run(args.images_dir, args.images, args.architecture)
    if rows:
        print_table(rows)


if __name__ == "__main__":
    main()
