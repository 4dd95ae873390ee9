#!/usr/bin/env python3
"""A tiny captioner trained from scratch on the shared vi-photos, against its untrained self and the most
frequent training caption, as `mmtools eval captioning` reports them in one run.

    .venv/bin/python benchmarks/caption_vi_photos.py [WORK_DIR] [--epochs N]    # a few minutes of CPU

Protocol: the 626 photos (5 Vietnamese captions each) are shuffled with seed 0; 500 train (10% of those
images held out for validation: early stopping on their CIDEr), the other 126 test. The model is
`train captioner --arch tiny`: a ViT (64 px, patch 8) and a BERT-style decoder, both 128 wide and 2 layers,
over a syllable vocabulary of the training captions (syllables seen at least twice). Captions are generated
greedily and scored in syllables (lower case, no punctuation) with pycocoevalcap's BLEU-4 and CIDEr(-D).

Tiny models run faster on one thread than on two busy cores, so OMP_NUM_THREADS defaults to 1 here.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = next((p for p in (ROOT.parent / "shared" / "data" / "vi-photos",
                           ROOT.parent.parent / "shared" / "data" / "vi-photos") if p.is_dir()),
              ROOT.parent / "shared" / "data" / "vi-photos")
MMTOOLS = [sys.executable, "-m", "mmtools"]
TRAIN_IMAGES = 500


def make_data(work: Path) -> tuple[Path, Path]:
    rows = [json.loads(line) for line in (PHOTOS / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    rows.sort(key=lambda row: row["id"])
    random.Random(0).shuffle(rows)
    files = []
    for name, part in (("train", rows[:TRAIN_IMAGES]), ("test", rows[TRAIN_IMAGES:])):
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": r["id"], "path": str(PHOTOS / r["path"]), "captions": r["captions"]},
                                           ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
        files.append(path)
    return files[0], files[1]


def run(args: list[str], env: dict[str, str]) -> str:
    started = time.monotonic()
    result = subprocess.run(MMTOOLS + args, capture_output=True, text=True, env=env)
    if result.returncode not in (0, 1):
        sys.exit(f"mmtools {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr}")
    print(f"# mmtools {' '.join(args[:2])}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", nargs="?", help="Folder for the data and the model [default: a temporary one]")
    parser.add_argument("--epochs", type=int, default=8)
    options = parser.parse_args()
    if not (PHOTOS / "captions.jsonl").exists():
        sys.exit(f"the shared photos are not at {PHOTOS}")
    work = Path(options.work or tempfile.mkdtemp(prefix="mmtools-caption-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    train, test = make_data(work)
    run(["train", "captioner", "--data", str(train), "--arch", "tiny", "--image-size", "64", "--patch-size", "8",
         "--hidden", "128", "--layers", "2", "--min-count", "2", "--epochs", str(options.epochs), "--patience", "3",
         "--lr", "1e-3", "-b", "32", "--workers", "1", "--val-fraction", "0.1", "-o", str(work / "run"),
         "--overwrite", "--metrics", str(work / "metrics.jsonl")], env)
    rows = [json.loads(line) for line in run(["eval", "captioning", "--data", str(test), "-m", str(work / "run"),
                                              "--max-new-tokens", "30"], env).splitlines()]
    print(f"vi-photos: {TRAIN_IMAGES} training images, {rows[0]['images']} test images "
          f"(OMP_NUM_THREADS={env['OMP_NUM_THREADS']})")
    print(f"{'model':<40} {'BLEU-4':>8} {'CIDEr':>8}")
    for row in rows:
        name = {"untrained": "tiny captioner, untrained", "most-frequent": "most frequent training caption",
                None: "tiny captioner, trained"}[row["baseline"]]
        print(f"{name:<40} {row['bleu4']:>8.4f} {row['cider']:>8.4f}")
    trained = rows[0]["cider"]
    margin = min(trained - row["cider"] for row in rows[1:])
    print(f"CIDEr margin over the better baseline: {margin:+.4f}")
    frequent = next((row["caption"] for row in rows if row.get("caption")), None)
    print(f"most frequent training caption: {frequent}")
    sample = run(["caption", "-m", str(work / "run"), str(test)], env).splitlines()[:3]
    for line in sample:
        record = json.loads(line)
        print(f"{record['id']}: {record['caption']}  |  reference: {record['captions'][0]}")


if __name__ == "__main__":
    main()
