"""Tiny towers and synthetic multi-label data, for tests, demos and quick experiments (no hub needed).

``synthetic_tagging_data`` makes records in which some tags are decided by the text alone ("wifi", "mát")
and others by the image alone ("đỏ", "xanh"), so a tagger that reads both should beat either one alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable

TEXT_TAGS = {"wifi": "wifi", "mát": "thoáng_mát"}  # tag: the word that decides it
IMAGE_TAGS = {"đỏ": (200, 30, 30), "xanh": (30, 60, 200)}  # tag: the colour of the image's left half
FILLER = ["phòng", "rộng", "gần", "chợ", "giá", "rẻ", "có", "chỗ", "để", "xe", "yên_tĩnh", "sạch_sẽ"]


def build_text_tower(directory: str | Path, texts: Iterable[str], *, hidden: int = 32, layers: int = 2,
                     seed: int = 0) -> Path:
    """A PhoBERT-style text tower: RoBERTa over PhoBERT's BPE tokenizer, one token per (segmented) word."""
    import torch
    from transformers import PhobertTokenizer, RobertaConfig, RobertaModel

    from mmtools.models.hf_dual import quiet_transformers
    from mmtools.models.synthetic import _whole_word_bpe

    quiet_transformers()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({word for text in texts for word in text.split()})
    vocab, merges = _whole_word_bpe(words)
    (directory / "vocab.txt").write_text("".join(f"{token} 1\n" for token in vocab), encoding="utf-8")
    (directory / "bpe.codes").write_text("".join(f"{a} {b} 1\n" for a, b in merges), encoding="utf-8")
    tokenizer = PhobertTokenizer(str(directory / "vocab.txt"), str(directory / "bpe.codes"))
    torch.manual_seed(seed)
    model = RobertaModel(RobertaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                                       num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=258,
                                       pad_token_id=tokenizer.pad_token_id), add_pooling_layer=False)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_image_tower(directory: str | Path, *, image_size: int = 32, widths: tuple[int, ...] = (16, 32),
                      seed: int = 0) -> Path:
    """A small ResNet (the design's image tower family) with a Pillow image processor."""
    import torch
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    torch.manual_seed(seed)
    model = ResNetModel(ResNetConfig(embedding_size=widths[0], hidden_sizes=list(widths),
                                     depths=[1] * len(widths), layer_type="basic"))
    model.save_pretrained(directory)
    ConvNextImageProcessorPil(size={"shortest_edge": image_size}, crop_pct=1.0).save_pretrained(directory)
    return Path(directory)


def synthetic_tagging_data(folder: str | Path, count: int, *, seed: int = 0, image_size: int = 32,
                           name: str = "data") -> Path:
    """Write ``count`` records (text, image, tags) to ``folder/name.jsonl`` with images in ``folder/images``.

    Each of the four tags is present with probability 1/2, independently; text tags decide a word in the
    (segmented) text, image tags the colour of the image's left or right half. Noise hides nothing else.
    """
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            tags = [tag for tag in (*TEXT_TAGS, *IMAGE_TAGS) if rng.random() < 0.5]
            words = rng.sample(FILLER, 4) + [TEXT_TAGS[t] for t in TEXT_TAGS if t in tags]
            rng.shuffle(words)
            pixels = np.full((image_size, image_size, 3), 128, np.uint8)
            half = image_size // 2
            for tag, colour in IMAGE_TAGS.items():
                if tag in tags:
                    offset = 0 if tag == "đỏ" else half
                    pixels[:, offset:offset + half] = colour
            for _ in range(image_size * 2):  # a little noise
                pixels[rng.randrange(image_size), rng.randrange(image_size)] = rng.randrange(256)
            image = Image.fromarray(pixels)
            image_name = f"images/{name}-{i:04d}.png"
            image.save(folder / image_name)
            record = {"id": f"{name}-{i}", "text": " ".join(words), "path": image_name, "tags": tags}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
