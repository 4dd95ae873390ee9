"""Randomly initialised dual encoders saved exactly like real ones, for offline tests, benchmarks and demos.

Weights are random, so vectors carry no meaning, but loading, preprocessing, batching, indexing and speed are
those of the real thing: a random model of a real architecture costs what the trained one costs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SAMPLE_TEXTS = [
    "một chiếc xe hơi màu đỏ đậu trước ngôi nhà",
    "con mèo đang ngủ trên ghế",
    "người đàn ông đang chơi bóng chày",
    "a red car parked in front of a house",
    "xe_hơi ngôi_nhà điều_hòa",
    "hòa bình thủy thủ khỏe",
]

# name: (family, vision config, text config, image size); "phobert-tiny" is built separately below.
ARCHITECTURES = {
    "clip-tiny": ("clip", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=32, patch_size=8),
                  dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       max_position_embeddings=77), 32),
    "siglip-tiny": ("siglip", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, image_size=32, patch_size=8),
                    dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=64), 32),
    # SigLIP 2 base/16 at 224 px (google/siglip2-base-patch16-224 uses the SigLIP architecture).
    "siglip2-base": ("siglip", dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                    num_attention_heads=12, image_size=224, patch_size=16),
                     dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                          max_position_embeddings=64), 224),
    # A ViT-S/16 image tower (CLIP layout) at 224 px.
    "vit-s16": ("clip", dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6,
                             image_size=224, patch_size=16),
                dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=6,
                     max_position_embeddings=77), 224),
}


def build_random_model(directory: str | Path, architecture: str = "siglip-tiny",
                       texts: Iterable[str] = SAMPLE_TEXTS, seed: int = 0) -> Path:
    """Write a randomly initialised model (weights, tokenizer, image processor) to ``directory``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    if architecture == "phobert-tiny":
        return _build_phobert_dual_encoder(Path(directory), texts, seed)
    family, vision, text, image_size = ARCHITECTURES[architecture]
    directory = Path(directory)
    tokenizer = _word_tokenizer(texts, max_length=text["max_position_embeddings"])
    text = dict(text, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    if family == "clip":
        from transformers import CLIPImageProcessorPil as Processor

        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=vision["hidden_size"]))
        processor = Processor(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                               "width": image_size})
    else:
        from transformers import SiglipImageProcessorPil as Processor

        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = Processor(size={"height": image_size, "width": image_size})
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def install_in_hub_cache(model_dir: str | Path, cache: str | Path, repo_id: str,
                         revision: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Lay a model directory out in a Hugging Face cache exactly as huggingface_hub does (blobs, a snapshot of
    symlinks, refs/main), so `--model ORG/NAME` loads it as a cached hub model, offline. Returns the snapshot."""
    import os
    import shutil

    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for number, source in enumerate(sorted(Path(model_dir).iterdir())):
        blob = repo / "blobs" / f"{number:040x}"
        shutil.copy(source, blob)
        (snapshot / source.name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def _word_tokenizer(texts: Iterable[str], max_length: int):
    """A whitespace word-level tokenizer trained on ``texts``: small, offline, and a real fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.normalizer = normalizers.NFC()  # no lower-casing: that is the text rules' job, and tests check it
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    backend.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=specials))
    backend.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]", model_max_length=max_length)


def _build_phobert_dual_encoder(directory: Path, texts: Iterable[str], seed: int) -> Path:
    """A PhoBERT-style text tower (RoBERTa with PhoBERT's BPE tokenizer over word-segmented words, "xe_hơi")
    and a small ViT, as a VisionTextDualEncoder: the layout of PhoCLIP-style models."""
    import torch
    from transformers import (CLIPImageProcessorPil, CLIPVisionConfig, PhobertTokenizer, RobertaConfig,
                              VisionTextDualEncoderConfig, VisionTextDualEncoderModel)

    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({word for text in texts for word in text.split()} | {"xe_hơi", "ngôi_nhà"})
    vocab, merges = _whole_word_bpe(words)
    (directory / "vocab.txt").write_text("".join(f"{token} 1\n" for token in vocab), encoding="utf-8")
    (directory / "bpe.codes").write_text("".join(f"{a} {b} 1\n" for a, b in merges), encoding="utf-8")
    tokenizer = PhobertTokenizer(str(directory / "vocab.txt"), str(directory / "bpe.codes"))
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8)
    text = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=258, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = VisionTextDualEncoderModel(VisionTextDualEncoderConfig.from_vision_text_configs(vision, text,
                                                                                            projection_dim=32))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def _whole_word_bpe(words: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """BPE merges that rebuild each word from its characters, left to right, so each word is one token.

    Longer words' merges rank first, so "xe_hơi" is not broken up by the merges that build "hơi".
    """
    merges: dict[tuple[str, str], None] = {}
    for word in sorted(words, key=len, reverse=True):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merges[(pieces[0], pieces[1])] = None
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
    return words, list(merges)


# Single towers for mmtools' own two-tower models (train retrieval --text-encoder / --image-encoder).
TOWERS = ("phobert-text-tiny", "resnet-tiny", "vit-tiny")


def build_random_tower(directory: str | Path, tower: str, texts: Iterable[str] = SAMPLE_TEXTS, seed: int = 0,
                       image_size: int = 32) -> Path:
    """Write a randomly initialised single tower: a PhoBERT-style RoBERTa text model (PhoBERT's tokenizer
    over whole words, "xe_hơi"), a ResNet (pooled output) or a ViT, with its tokenizer or image processor."""
    import torch
    from transformers import (CLIPImageProcessorPil, PhobertTokenizer, ResNetConfig, ResNetModel, RobertaConfig,
                              RobertaModel, ViTConfig, ViTModel)

    from mmtools.models.hf_dual import quiet_transformers

    quiet_transformers()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if tower == "phobert-text-tiny":
        words = sorted({word for text in texts for word in text.split()} | {"xe_hơi", "ngôi_nhà", ",", "."})
        vocab, merges = _whole_word_bpe(words)
        (directory / "vocab.txt").write_text("".join(f"{token} 1\n" for token in vocab), encoding="utf-8")
        (directory / "bpe.codes").write_text("".join(f"{a} {b} 1\n" for a, b in merges), encoding="utf-8")
        tokenizer = PhobertTokenizer(str(directory / "vocab.txt"), str(directory / "bpe.codes"))
        # No dropout, as in the tiny CLIP: a few hundred steps from scratch cannot afford it.
        config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=258,
                               pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0)
        RobertaModel(config).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return directory
    processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                      crop_size={"height": image_size, "width": image_size})
    if tower == "resnet-tiny":
        model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                         layer_type="basic"))
    elif tower == "vit-tiny":
        model = ViTModel(ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, image_size=image_size, patch_size=8))
    else:
        raise ValueError(f"unknown tower {tower!r}; choose one of {', '.join(TOWERS)}")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
