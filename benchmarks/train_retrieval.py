"""Training speed and memory: `mmtools train retrieval` against a plain PyTorch loop, same model, same data.

    PYTHONPATH=src python benchmarks/train_retrieval.py [--images 512] [--epochs 3] [--batch-size 32]
                                                        [--workers 2] [--size small|tiny]

Both run in fresh processes, one after the other, on the same synthetic captioned images (coloured shapes,
64 px) and the same randomly initialised CLIP (``--size small``: 128-d, 4 layers, 64 px, patch 8). The plain
loop is what one writes by hand: a Dataset that opens each image with Pillow, a collate that calls the Hugging
Face processor and tokenizer, CLIPModel(return_loss=True), AdamW, backward, step. mmtools runs the real
command (``mmtools train retrieval --base ...``), with its engine, data checks, text rules and checkpoints.

Reported: samples/s of each epoch's training loop, averaged over the epochs after the first (start-up, data
checks, evaluation and mmtools' per-epoch checkpoint are outside the loop on both sides), and the peak
resident memory of each process and of its DataLoader workers. Goal: mmtools at least 0.9x the plain loop on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    "small": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4),
}


def build_model(directory: Path, size: str) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from mmtools.models.hf_dual import quiet_transformers
    from mmtools.models.synthetic import _word_tokenizer
    from mmtools.train.demo import vocabulary_texts

    quiet_transformers()
    layers = SIZES[size]
    tokenizer = _word_tokenizer(vocabulary_texts(), max_length=77)
    text = dict(layers, max_position_embeddings=77, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    vision = dict(layers, image_size=64, patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=layers["hidden_size"])
              ).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(directory)
    return directory


# ------------------------------------------------------------------------------------------ children


def run_plain(model_dir: str, data: str, epochs: int, batch_size: int, workers: int) -> dict:
    import random

    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    torch.manual_seed(0)
    model = CLIPModel.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    base = Path(data).parent
    rows = [json.loads(line) for line in Path(data).read_text(encoding="utf-8").splitlines()]

    class Pairs(Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return Image.open(base / rows[i]["path"]).convert("RGB"), random.choice(rows[i]["captions"])

    def collate(items):
        pixels = processor(images=[image for image, _ in items], return_tensors="pt")["pixel_values"]
        tokens = tokenizer([text for _, text in items], padding=True, truncation=True, max_length=77,
                           return_tensors="pt")
        return pixels, tokens

    loader = DataLoader(Pairs(), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    model.train()
    rates = []
    for _ in range(epochs):
        started, samples = time.perf_counter(), 0
        for pixels, tokens in loader:
            loss = model(pixel_values=pixels, **tokens, return_loss=True).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            samples += pixels.shape[0]
        rates.append(samples / (time.perf_counter() - started))
    return {"samples_per_s": rates}


def run_mmtools(model_dir: str, data: str, epochs: int, batch_size: int, workers: int) -> dict:
    from typer.testing import CliRunner

    from mmtools.cli import app

    with tempfile.TemporaryDirectory() as scratch:
        metrics = Path(scratch) / "metrics.jsonl"
        result = CliRunner().invoke(app, ["train", "retrieval", "--data", data, "--base", model_dir, "-o",
                                          str(Path(scratch) / "run"), "--epochs", str(epochs), "-b",
                                          str(batch_size), "--workers", str(workers), "--patience", "0",
                                          "--metrics", str(metrics), "--device", "cpu"])
        if result.exit_code != 0:
            raise SystemExit(f"mmtools train retrieval failed: {result.stderr}")
        lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    # the engine's samples_per_s times each epoch's training loop, as the plain loop does
    return {"samples_per_s": [m["samples_per_s"] for m in lines]}


def child_main(args: argparse.Namespace) -> None:
    runner = run_plain if args.child == "plain" else run_mmtools
    out = runner(args.model, args.data, args.epochs, args.batch_size, args.workers)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["children_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------ parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--child", choices=["plain", "mmtools"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mmtools.train.demo import make_shapes

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = make_shapes(root / "data", args.images, seed=0)
        model = build_model(root / "model", args.size)
        print(f"{args.images} images, batch {args.batch_size}, {args.epochs} epochs, {args.workers} workers, "
              f"CLIP {args.size}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        results = {}
        for name in ("plain", "mmtools"):
            command = [sys.executable, __file__, "--child", name, "--model", str(model), "--data", str(data),
                       "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                       "--workers", str(args.workers)]
            done = subprocess.run(command, capture_output=True, text=True, env=os.environ)
            if done.returncode != 0:
                raise SystemExit(f"{name} run failed:\n{done.stderr}")
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        for name, result in results.items():
            rates = result["samples_per_s"]
            steady = rates[1:] or rates
            result["steady"] = sum(steady) / len(steady)
            print(f"  {name:8s} {result['steady']:8.1f} samples/s (epochs: "
                  f"{', '.join(f'{r:.1f}' for r in rates)})  peak RSS {result['peak_rss_mb']:.0f} MB "
                  f"(+ workers {result['children_peak_rss_mb']:.0f} MB)")
        ratio = results["mmtools"]["steady"] / results["plain"]["steady"]
        print(f"  mmtools / plain loop: {ratio:.2f}x (goal >= 0.90x on CPU)")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
