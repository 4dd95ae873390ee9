"""The image preprocessing of CLIP and SigLIP processors, at a fraction of the CPU cost.

transformers' Pillow backend turns each image into a numpy array, back into a Pillow image to resize it,
into numpy again, then rescales and normalises it image by image in float64. For the processors listed in
FAST_PROCESSORS the same tensor comes from one Pillow resize of the RGB image, an optional centre crop, and
one vectorised rescale-and-normalise per batch. The result matches the processor's to float32 rounding
(tests check this); anything else (other processors, images smaller than the crop) goes to the processor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

FAST_PROCESSORS = frozenset({"CLIPImageProcessor", "CLIPImageProcessorPil", "SiglipImageProcessor",
                             "SiglipImageProcessorPil"})


def _side(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class FastImagePreprocessor:
    resample: int
    height: int | None  # fixed output size (SigLIP) ...
    width: int | None
    shortest_edge: int | None  # ... or shortest edge then centre crop (CLIP)
    crop: tuple[int, int] | None
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, processor: Any) -> "FastImagePreprocessor | None":
        """A fast equivalent of ``processor``, or None when it is not one this module reproduces exactly."""
        if type(processor).__name__ not in FAST_PROCESSORS:
            return None
        if not (processor.do_resize and processor.do_rescale and processor.do_normalize):
            return None
        size = processor.size
        height, width, shortest = _side(size, "height"), _side(size, "width"), _side(size, "shortest_edge")
        if _side(size, "longest_edge") or not ((height and width) or shortest):
            return None
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop_h, crop_w = _side(processor.crop_size, "height"), _side(processor.crop_size, "width")
            if not (crop_h and crop_w):
                return None
            crop = (crop_h, crop_w)
        mean, std = list(processor.image_mean), list(processor.image_std)
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(int(processor.resample), height if height and width else None,
                   width if height and width else None, None if height and width else shortest, crop,
                   float(processor.rescale_factor), tuple(mean), tuple(std))

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> "FastImagePreprocessor | None":
        """The same from a saved ``preprocessor_config.json`` (no transformers): for ONNX towers exported
        elsewhere (mmtools.models.onnx_prebuilt)."""
        from types import SimpleNamespace

        kind = values.get("image_processor_type") or values.get("feature_extractor_type") or ""
        defaults = {"do_resize": True, "do_rescale": True, "do_normalize": True, "do_center_crop": False,
                    "resample": 3, "rescale_factor": 1 / 255, "crop_size": None}
        fields = {**defaults, **{k: v for k, v in values.items() if k.isidentifier()}}
        if isinstance(fields.get("size"), int):
            fields["size"] = {"shortest_edge": fields["size"]}
        if isinstance(fields.get("crop_size"), int):
            fields["crop_size"] = {"height": fields["crop_size"], "width": fields["crop_size"]}
        if "image_mean" not in fields or "image_std" not in fields or "size" not in fields:
            return None
        processor = type(kind.removesuffix("Fast") or "Unknown", (SimpleNamespace,), {})(**fields)
        return cls.from_processor(processor)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing, by the processors' own rule for a shortest edge."""
        if self.height and self.width:
            return self.width, self.height
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def fits(self, image: Any) -> bool:
        if self.crop is None:
            return True
        width, height = self.target_size(*image.size)
        return width >= self.crop[1] and height >= self.crop[0]

    def __call__(self, images: Sequence[Any]) -> dict[str, Any]:
        import torch

        return {"pixel_values": torch.from_numpy(self.as_array(images))}

    def as_array(self, images: Sequence[Any]) -> Any:
        """The batch as a float32 numpy array (N, 3, H, W): what ONNX Runtime takes, with no torch at all."""
        import numpy as np

        arrays = []
        for image in images:
            resized = image.resize(self.target_size(*image.size), resample=self.resample)
            if self.crop is not None:
                crop_h, crop_w = self.crop
                top, left = (resized.height - crop_h) // 2, (resized.width - crop_w) // 2
                resized = resized.crop((left, top, left + crop_w, top + crop_h))
            arrays.append(np.asarray(resized, dtype=np.uint8))
        batch = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((batch * np.float32(self.scale) - mean) / std)

    def to_dict(self) -> dict[str, Any]:
        """What an export records, so the ONNX encoder preprocesses exactly alike without transformers."""
        import dataclasses

        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FastImagePreprocessor":
        fields = dict(values)
        for key in ("crop", "mean", "std"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        return cls(**fields)
