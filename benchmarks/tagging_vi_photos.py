#!/usr/bin/env python3
"""Text-only vs image-only vs fused taggers on the shared vi-photos, trained from scratch on the CPU.

    .venv/bin/python benchmarks/tagging_vi_photos.py [WORK_DIR]     # about 15 minutes on 2 busy cores

Protocol: tags are caption keywords (sports, people, clothes: KEYWORDS) found in at least 2 of a photo's
captions 2-5; the text the taggers read is caption 1 only, so the text does not simply contain its tags.
Split 70/15/15 (seed 0); labels seen fewer than 5 times in training are left out (and count as missed).
Towers are tiny and randomly initialised (no hub here): a PhoBERT-style RoBERTa (64 wide, 2 layers) over a
vocabulary of the segmented training captions, and a ResNet (32-64-128) at 64 px. Prints the side-by-side
`eval tagging` table and writes WORK_DIR/f1.png.
"""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The shared data sits beside the repository (or beside the folder holding a git worktree of it).
PHOTOS = next((p for p in (ROOT.parent / "shared" / "data" / "vi-photos",
                           ROOT.parent.parent / "shared" / "data" / "vi-photos") if p.is_dir()),
              ROOT.parent / "shared" / "data" / "vi-photos")
KEYWORDS = {
    "bóng chày": ["bóng chày"], "quần vợt": ["tennis", "quần vợt"], "bóng đá": ["bóng đá"],
    "ném đĩa": ["ném dĩa", "ném đĩa", "đĩa bay", "dĩa bay", "frisbee"], "lướt sóng": ["lướt sóng"],
    "trượt tuyết": ["trượt tuyết"], "trượt ván": ["trượt ván", "ván trượt"], "gôn": ["gôn", "golf"],
    "phụ nữ": ["phụ nữ", "cô gái", "nữ"],
    "trẻ em": ["đứa trẻ", "cậu bé", "cô bé", "em bé", "trẻ em", "bé trai", "bé gái"],
    "khán giả": ["khán giả"], "sân cỏ": ["sân cỏ", "bãi cỏ", "trên cỏ"], "áo đỏ": ["áo đỏ"],
    "áo trắng": ["áo trắng"], "áo xanh": ["áo xanh"], "áo đen": ["áo đen"], "găng tay": ["găng tay"],
    "con chó": ["con chó", "chú chó"], "biển": ["biển", "bãi biển", "sóng"], "tuyết": ["tuyết"],
}
MODELS = {"text": ["--modality", "text"], "image": ["--modality", "image"],
          "concat": ["--modality", "both", "--fusion", "concat"],
          "attention": ["--modality", "both", "--fusion", "attention"]}
TRAINING = ("--fusion-dim 64 --hidden-dim 128 --dropout 0.2 --text-pooling mean --epochs 2 --finetune-epochs 14 "
            "--lr 3e-3 --text-lr 1e-3 --image-lr 1e-3 --finetune-lr-scale 0.5 --patience 4 -b 32 --workers 1 "
            "--min-label-count 5 --overwrite").split()


def keywords_in(caption: str) -> set[str]:
    from mmtools.text.normalize import normalize_text

    text = " " + normalize_text(caption.lower()) + " "
    return {tag for tag, words in KEYWORDS.items()
            if any(f" {w}{end}" in text for w in words for end in (" ", ".", ","))}


def make_data(work: Path) -> None:
    rows = [json.loads(line) for line in (PHOTOS / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
    out = []
    for row in rows:
        counts = collections.Counter(t for caption in row["captions"][1:] for t in keywords_in(caption))
        out.append({"id": row["id"], "text": row["captions"][0], "path": str(PHOTOS / row["path"]),
                    "tags": sorted(t for t, n in counts.items() if n >= 2)})
    random.Random(0).shuffle(out)
    a, b = int(len(out) * 0.7), int(len(out) * 0.85)
    for name, part in (("train", out[:a]), ("val", out[a:b]), ("test", out[b:])):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                            encoding="utf-8")


def make_towers(work: Path) -> None:
    from mmtools.models.hf_dual import PHOBERT_RULES
    from mmtools.tag.synthetic import build_image_tower, build_text_tower
    from mmtools.text.prepare import TextPreparer

    texts = [json.loads(line)["text"] for line in (work / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    build_text_tower(work / "text-tower", TextPreparer(PHOBERT_RULES)(texts), hidden=64, layers=2)
    build_image_tower(work / "image-tower", image_size=64, widths=(32, 64, 128))


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "tagging-vi-photos").resolve()
    work.mkdir(parents=True, exist_ok=True)
    make_data(work)
    make_towers(work)
    program = str(Path(sys.executable).parent / "mmtools")
    for name, flags in MODELS.items():
        subprocess.run([program, "-q", "train", "tagger", "--data", "train.jsonl", "--val", "val.jsonl",
                        "--text-model", "text-tower", "--image-model", "image-tower", *TRAINING, *flags,
                        "-o", f"tagger-{name}"], cwd=work, check=True)
    evaluated = subprocess.run([program, "eval", "tagging", "--data", "test.jsonl", "--per-label", "--plot", "f1.png",
                                *[arg for name in MODELS for arg in ("-m", f"tagger-{name}")]],
                               cwd=work, check=True, capture_output=True, text=True)
    for line in evaluated.stdout.splitlines():
        report = json.loads(line)
        print(f"{report['model']:18s} examples {report['examples']}  micro P/R/F1 "
              + " ".join(f"{report['micro'][k]:.4f}" for k in ("precision", "recall", "f1"))
              + "  macro F1 " + f"{report['macro']['f1']:.4f}")
    print(f"per-label F1: {work / 'f1.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
