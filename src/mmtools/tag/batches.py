"""Turning tagging examples into model batches: the text rules and tokenizer, the image processor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from mmtools.images import load_image
from mmtools.tag.towers import Towers
from mmtools.text.prepare import TextPreparer


@dataclass
class Sample:
    """One sample. ``text`` is already prepared (normalised, segmented); ``image`` is a path or a PIL image;
    ``target`` is the 0/1 vector over the labels (None at inference)."""

    id: str
    text: str | None = None
    image: Any = None
    target: Any = None


class BatchMaker:
    """Picklable (it runs as a DataLoader collate_fn in worker processes)."""

    def __init__(self, towers: Towers):
        self.tokenizer = towers.tokenizer
        self.rules = towers.text_rules
        self.image_processor = towers.image_processor
        self._preparer = TextPreparer(self.rules) if self.rules is not None else None
        self._fast = None
        if self.image_processor is not None:
            from mmtools.models.image_preprocess import FastImagePreprocessor

            self._fast = FastImagePreprocessor.from_processor(self.image_processor)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_preparer"] = None  # the segmenter is rebuilt where needed; texts are prepared beforehand
        return state

    def prepare_texts(self, texts: Sequence[str]) -> list[str]:
        if not texts or self.rules is None:  # nothing to do, or a tagger that reads no text
            return list(texts)
        if self._preparer is None:
            self._preparer = TextPreparer(self.rules)
        return self._preparer(list(texts))

    @property
    def image_size(self) -> int | None:
        size = getattr(self.image_processor, "size", None) or {}
        values = [v for v in (size.values() if isinstance(size, dict) else []) if isinstance(v, int)]
        return max(values) if values else None

    def pixels(self, images: Sequence[Any]) -> Any:
        images = [load_image(image, draft_size=self.image_size) if isinstance(image, str) else image
                  for image in images]
        if self._fast is not None and all(self._fast.fits(image) for image in images):
            return self._fast(images)["pixel_values"]
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    def __call__(self, examples: Sequence[Sample]) -> dict[str, Any]:
        import numpy as np
        import torch

        has_text = torch.tensor([e.text is not None for e in examples], dtype=torch.bool)
        has_image = torch.tensor([e.image is not None for e in examples], dtype=torch.bool)
        batch: dict[str, Any] = {"has_text": has_text, "has_image": has_image, "ids": [e.id for e in examples]}
        texts = [e.text for e in examples if e.text is not None]
        if texts and self.tokenizer is not None:
            rules = self.rules
            tokens = self.tokenizer(texts, padding="max_length" if rules.padding == "max_length" else True,
                                    truncation=True, max_length=rules.max_length, return_tensors="pt")
            mask = tokens.get("attention_mask")
            if mask is None:
                mask = torch.ones_like(tokens["input_ids"])
            batch["text"] = {"input_ids": tokens["input_ids"], "attention_mask": mask}
        images = [e.image for e in examples if e.image is not None]
        if images and self.image_processor is not None:
            batch["pixel_values"] = self.pixels(images)
        if all(e.target is not None for e in examples):
            batch["targets"] = torch.from_numpy(np.stack([np.asarray(e.target, np.float32) for e in examples]))
        return batch


def to_device(batch: dict[str, Any], device: str, dtype: Any = None) -> dict[str, Any]:
    import torch

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if dtype is not None and value.is_floating_point():
                return value.to(device=device, dtype=dtype)
            return value.to(device)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return {k: move(v) for k, v in batch.items()}


def withheld(batch: dict[str, Any], modality: str) -> dict[str, Any]:
    """``batch`` as if no row had its ``modality`` ("text" or "image"): what a tagger sees of records
    without it (used to measure, and tune thresholds for, the one-modality modes)."""
    import torch

    out = dict(batch)
    key, flag = ("text", "has_text") if modality == "text" else ("pixel_values", "has_image")
    out.pop(key, None)
    out[flag] = torch.zeros_like(batch[flag])
    return out

