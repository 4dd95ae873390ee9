"""Tiny captioners of every supported family, and shapes data with questions, for tests and quick runs.

``build_tiny_captioner`` is also what `train captioner --arch tiny` starts from: a small ViT image encoder
and a BERT-style decoder with cross-attention (a VisionEncoderDecoderModel) over a syllable tokenizer learnt
from the training captions. ``build_random_captioner`` writes randomly initialised BLIP, GIT and LLaVA models
saved exactly as real ones are, so the real loading and generation code runs on them offline.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable

SAMPLE_CAPTIONS = ["một con mèo đang ngủ trên ghế", "người đàn ông chơi bóng chày trên sân cỏ",
                   "Hình này màu gì ?", "Đây là hình gì ?", "màu đỏ hình tròn hình vuông màu xanh"]
RANDOM_FAMILIES = ("vision-encoder-decoder", "blip", "git", "llava")


def build_tiny_captioner(directory: str | Path, texts: Iterable[str], *, image_size: int = 32, patch_size: int = 8,
                         hidden: int = 64, layers: int = 2, min_count: int = 1, max_length: int = 64,
                         seed: int = 0) -> Path:
    """A small VisionEncoderDecoderModel (ViT + BERT decoder, no dropout) whose tokenizer is learnt from
    ``texts``, written with save_pretrained (safetensors)."""
    import torch
    from transformers import (BertConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel,
                              ViTConfig, ViTImageProcessorPil)

    from mmtools.caption.text import syllable_tokenizer
    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    directory = Path(directory)
    tokenizer = syllable_tokenizer(texts, min_count=min_count, max_length=max_length)
    encoder = ViTConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                        num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    decoder = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=max_length + 8,
                         is_decoder=True, add_cross_attention=True, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(directory)
    return directory


def build_random_captioner(directory: str | Path, family: str, texts: Iterable[str] = SAMPLE_CAPTIONS,
                           seed: int = 0) -> Path:
    """A randomly initialised captioner of ``family`` (RANDOM_FAMILIES), tiny, saved like the real ones."""
    import torch

    from mmtools.caption.text import syllable_tokenizer
    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    directory = Path(directory)
    texts = list(texts)
    if family == "vision-encoder-decoder":
        return build_tiny_captioner(directory, texts, hidden=32, seed=seed)
    tokenizer = syllable_tokenizer(texts)
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    vision = dict(tiny, image_size=32, patch_size=8)
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    if family == "blip":
        from transformers import (BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil,
                                  BlipProcessor)

        text = dict(tiny, vocab_size=len(tokenizer), max_position_embeddings=64,
                    sep_token_id=tokenizer.eos_token_id, **ids)
        model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision))
        processor = BlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer)
    elif family == "git":
        from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

        model = GitForCausalLM(GitConfig(vision_config=vision, vocab_size=len(tokenizer),
                                         max_position_embeddings=64, **tiny, **ids))
        processor = GitProcessor(CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                       crop_size={"height": 32, "width": 32}), tokenizer)
    elif family == "llava":
        model, processor = _tiny_llava(tokenizer, tiny, vision)
    else:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(RANDOM_FAMILIES)}")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


CHAT_TEMPLATE = ("{% for message in messages %}[{{ message['role'] }}]{% for part in message['content'] %}"
                 "{% if part['type'] == 'image' %} <image>{% else %} {{ part['text'] }}{% endif %}{% endfor %}"
                 "{% if message['role'] == 'assistant' %} [EOS]{% endif %}\n{% endfor %}"
                 "{% if add_generation_prompt %}[assistant]{% endif %}")


def _tiny_llava(tokenizer, tiny: dict, vision: dict):
    """A LLaVA (CLIP vision tower, Llama decoder) with a chat template: the layout of chat VLMs."""
    from transformers import (CLIPImageProcessorPil, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "[user]", "[assistant]"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    text = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       num_key_value_heads=2, **tiny)
    config = LlavaConfig(vision_config=dict(vision, model_type="clip_vision_model", projection_dim=32),
                         text_config=text, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_select_strategy="default", vision_feature_layer=-1)
    processor = LlavaProcessor(CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                     crop_size={"height": 32, "width": 32}),
                               tokenizer, patch_size=8, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE, image_token="<image>")
    return LlavaForConditionalGeneration(config), processor


# ------------------------------------------------------------------------------------------ shapes with questions

COLOURS = {"đỏ": (210, 40, 40), "xanh": (40, 80, 210), "vàng": (230, 200, 30)}
SHAPES = ("tròn", "vuông", "tam giác")
QUESTIONS = {"colour": "Hình này màu gì?", "shape": "Đây là hình gì?"}


def draw_shape(shape: str, colour: tuple[int, int, int], size: int, rng: random.Random):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    half = rng.randint(size * 3 // 10, size * 4 // 10)  # large, near the middle: a tiny model learns it fast
    cx, cy = size // 2 + rng.randint(-2, 2), size // 2 + rng.randint(-2, 2)
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "tròn":
        draw.ellipse(box, fill=colour)
    elif shape == "vuông":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    return image


def shapes_vqa_data(folder: str | Path, count: int, *, seed: int = 0, size: int = 32, name: str = "data") -> Path:
    """``count`` pictures of a coloured shape, each with two records: "Hình này màu gì?" (answer: "màu" and the
    colour) and "Đây là hình gì?" (answer: "hình" and the shape). Returns the JSONL file (paths relative to
    it)."""
    folder = Path(folder)
    (folder / name).mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
        path = f"{name}/{i:04d}.png"
        draw_shape(shape, COLOURS[colour], size, rng).save(folder / path)
        for question, answer in ((QUESTIONS["colour"], f"màu {colour}"), (QUESTIONS["shape"], f"hình {shape}")):
            lines.append(json.dumps({"path": path, "question": question, "answer": answer}, ensure_ascii=False))
    target = folder / f"{name}.jsonl"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target
