"""A synthetic captioned image set for the offline demonstration: coloured shapes with Vietnamese captions.

Each picture is one shape (hình tròn, hình vuông, hình tam giác, hình thoi) in one of six colours, small or
large, on the left, in the middle or on the right, on a light or dark background, with jitter in position
and size. Each has two captions ("một hình tròn màu đỏ nhỏ ở bên trái, trên nền trắng" and "hình tròn đỏ
trên nền trắng"). Nothing is downloaded: a model trained on it from scratch shows, in minutes on a CPU,
that training works (held-out Recall@5 far above chance and above the untrained model).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SHAPES = ("tròn", "vuông", "tam giác", "thoi")
COLOURS = {"đỏ": (220, 30, 30), "xanh lá": (30, 170, 60), "xanh dương": (40, 70, 230), "vàng": (240, 210, 20),
           "tím": (150, 40, 190), "cam": (250, 130, 20)}
SIZES = {"nhỏ": 0.22, "lớn": 0.42}
POSITIONS = {"bên trái": 0.27, "ở giữa": 0.5, "bên phải": 0.73}
BACKGROUNDS = {"trắng": (245, 245, 245), "đen": (20, 20, 20)}


def captions_for(shape: str, colour: str, size: str, position: str, background: str) -> list[str]:
    where = position if position == "ở giữa" else f"ở {position}"
    return [f"một hình {shape} màu {colour} {size} {where}, trên nền {background}",
            f"hình {shape} {colour} trên nền {background}"]


def draw(shape: str, colour: str, size: str, position: str, background: str, rng: random.Random,
         side: int = 64):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), BACKGROUNDS[background])
    pen = ImageDraw.Draw(image)
    radius = side * SIZES[size] / 2 * rng.uniform(0.85, 1.15)
    cx = side * POSITIONS[position] + rng.uniform(-3, 3)
    cy = side * 0.5 + rng.uniform(-side * 0.2, side * 0.2)
    fill = COLOURS[colour]
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "tròn":
        pen.ellipse(box, fill=fill)
    elif shape == "vuông":
        pen.rectangle(box, fill=fill)
    elif shape == "tam giác":
        pen.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    else:
        pen.polygon([(cx, cy - radius), (cx + radius, cy), (cx, cy + radius), (cx - radius, cy)], fill=fill)
    return image


def make_shapes(directory: str | Path, count: int, *, seed: int = 0, name: str = "captions.jsonl") -> Path:
    """Write ``count`` pictures under DIRECTORY/images and their records (``path``, ``captions``) to
    DIRECTORY/NAME; returns the JSONL path. Image paths are relative to it, as train retrieval expects."""
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records = []
    for number in range(count):
        attributes = (rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)),
                      rng.choice(list(POSITIONS)), rng.choice(list(BACKGROUNDS)))
        relative = f"images/{Path(name).stem}-{number:05d}.png"
        draw(*attributes, rng).save(directory / relative)
        records.append({"id": f"{Path(name).stem}-{number:05d}", "path": relative,
                        "captions": captions_for(*attributes)})
    path = directory / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def vocabulary_texts() -> list[str]:
    """Every caption the generator can write, raw and word-segmented: what a tiny tokenizer is trained on."""
    from mmtools.text import get_segmenter

    texts = [caption for shape in SHAPES for colour in COLOURS for size in SIZES for position in POSITIONS
             for background in BACKGROUNDS for caption in captions_for(shape, colour, size, position, background)]
    return texts + get_segmenter().segment_many(texts)


def build_starting_points(directory: str | Path, seed: int = 0) -> dict[str, Path]:
    """Tiny random starting points whose tokenizers know the demo's words: a CLIP ("clip"), and two towers
    ("text": PhoBERT-style RoBERTa, "image": ResNet)."""
    from mmtools.models.synthetic import build_random_model, build_random_tower

    directory = Path(directory)
    texts = vocabulary_texts()
    return {"clip": build_random_model(directory / "clip-tiny", "clip-tiny", texts=texts, seed=seed),
            "text": build_random_tower(directory / "phobert-tiny", "phobert-text-tiny", texts=texts, seed=seed),
            "image": build_random_tower(directory / "resnet-tiny", "resnet-tiny", seed=seed)}
