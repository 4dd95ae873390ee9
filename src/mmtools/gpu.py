"""The GPU side of embedding and search: what changes when a model runs on CUDA.

* Batches are staged in pinned host memory by the decoding threads and copied with ``non_blocking=True``, so
  the copy overlaps the previous forward pass.
* The batch size is chosen from free GPU memory (a probe batch measures the peak bytes per image), and a
  batch that still runs out of memory is split in halves and retried; later batches keep the smaller size.
* JPEGs are decoded on the GPU (``torchvision.io.decode_jpeg(device="cuda")``, a whole batch per call) and
  resized, cropped and normalised there, when torchvision is installed and the model's preprocessing is one
  mmtools reproduces (``FastImagePreprocessor``). Other files (PNG, JPEGs with an EXIF rotation, CMYK,
  oversized) take the CPU path, so results do not depend on which path an image took beyond resampling noise.
* ``gpu_search_index`` moves a FAISS index to the GPUs when the GPU build of FAISS sees some.

Precision: models are already cast to float16 on CUDA (``mmtools.models.device.dtype_for``); ``autocast``
here is for callers running float32 weights. Nothing in this module runs on the CPU-only CI except the pure
logic (batch-size arithmetic, splitting, OOM detection), which tests exercise with fakes.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any, Callable, Sequence

log = logging.getLogger("mmtools")

PROBE_ITEMS = 8
MEMORY_FRACTION = 0.7  # of the free memory, for activations; the rest absorbs fragmentation and other work
MAX_AUTO_BATCH = 1024


def is_cuda(device: str | None) -> bool:
    return bool(device) and str(device).split(":", 1)[0] == "cuda"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA out-of-memory, whichever way this torch version reports it."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def autocast(device: str | None) -> Any:
    """Mixed precision on CUDA (bfloat16 where supported, else float16); nothing elsewhere."""
    if not is_cuda(device):
        return nullcontext()
    import torch

    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


# ------------------------------------------------------------------------------------ staging batches


def stage(batch: Any, device: str | None) -> Any:
    """A preprocessed batch (dict of tensors) pinned and on its way to ``device`` (asynchronous copy).

    On the CPU the batch is returned as is. Called in the decoding threads, so pinning costs the model
    nothing; the encoder's own ``.to(device)`` then finds the tensors already there.
    """
    if not is_cuda(device) or not isinstance(batch, dict):
        return batch
    staged = {}
    for key, value in batch.items():
        if hasattr(value, "pin_memory") and not value.is_cuda:
            value = value.pin_memory().to(device, non_blocking=True)
        staged[key] = value
    return staged


def batch_length(batch: Any) -> int:
    return len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)


def split_batch(batch: Any, at: int) -> tuple[Any, Any]:
    if isinstance(batch, dict):
        return {k: v[:at] for k, v in batch.items()}, {k: v[at:] for k, v in batch.items()}
    return batch[:at], batch[at:]


class OomFallback:
    """Runs ``encode(batch)``; on CUDA out-of-memory frees the cache and runs it in halves, recursively.

    ``limit`` remembers the largest size that fitted, so later batches are cut to it up front instead of
    failing again. A single item that does not fit is a real error and is raised.
    """

    def __init__(self, on_shrink: Callable[[int], None] | None = None):
        self.limit: int | None = None
        self._on_shrink = on_shrink

    def __call__(self, encode: Callable[[Any], Any], batch: Any) -> Any:
        import numpy as np

        size = batch_length(batch)
        if self.limit is not None and size > self.limit:
            head, tail = split_batch(batch, self.limit)
            return np.concatenate([self(encode, head), self(encode, tail)])
        try:
            return encode(batch)
        except Exception as exc:
            if not is_out_of_memory(exc) or size <= 1:
                raise
        _empty_cache()
        half = size // 2
        self.limit = half if self.limit is None else min(self.limit, half)
        log.warning("GPU out of memory on a batch of %d; using batches of %d", size, half)
        if self._on_shrink:
            self._on_shrink(half)
        head, tail = split_batch(batch, half)
        return np.concatenate([self(encode, head), self(encode, tail)])


def _empty_cache() -> None:
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


# --------------------------------------------------------------------------------- choosing a batch size


def choose_batch_size(free_bytes: int, bytes_per_item: float, *, fraction: float = MEMORY_FRACTION,
                      minimum: int = 1, maximum: int = MAX_AUTO_BATCH) -> int:
    """The largest power of two whose activations fit in ``fraction`` of ``free_bytes``."""
    if bytes_per_item <= 0:
        return maximum
    fitting = int(free_bytes * fraction // bytes_per_item)
    size = minimum
    while size * 2 <= min(fitting, maximum):
        size *= 2
    return max(minimum, size)


def auto_image_batch_size(encoder: Any, default: int) -> int:
    """``default`` off CUDA; on CUDA, from free memory and the peak bytes of a probe batch of blank images."""
    device = getattr(encoder, "device", None)
    side = getattr(encoder, "image_size", None)
    if not is_cuda(device) or not side:
        return default
    import torch

    try:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        blank = {"pixel_values": torch.zeros(PROBE_ITEMS, 3, side, side, device=device)}
        encoder.encode_image_batch(blank)
        torch.cuda.synchronize(device)
        per_item = (torch.cuda.max_memory_allocated(device) - before) / PROBE_ITEMS
        free, _total = torch.cuda.mem_get_info(device)
    except Exception as exc:  # noqa: BLE001 - a failed probe is no reason to stop: use the default
        log.warning("could not measure GPU memory (%s); batch size %d", exc, default)
        return default
    size = choose_batch_size(free, per_item)
    log.info("batch size %d (%.0f MiB free, %.1f MiB per image)", size, free / 2**20, per_item / 2**20)
    return size


# ----------------------------------------------------------------------------------- GPU JPEG decoding


def torchvision_available() -> bool:
    try:
        import torchvision.io  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or a CPU torch with a CUDA torchvision (see NOTES)
        return False
    return True


def jpeg_decoder(encoder: Any) -> "GpuJpegDecoder | None":
    """A GPU JPEG decoder for ``encoder``'s images, or None (no CUDA, no torchvision, other preprocessing)."""
    device = getattr(encoder, "device", None)
    preprocessor = getattr(encoder, "_fast_images", None)
    if not is_cuda(device) or preprocessor is None or not torchvision_available():
        return None
    return GpuJpegDecoder(preprocessor, device)


class GpuJpegDecoder:
    """Decodes a batch of JPEG files on the GPU into the model's normalised pixel tensor."""

    def __init__(self, preprocessor: Any, device: str):
        self.pre = preprocessor
        self.device = device

    def eligible(self, path: str, max_pixels: int) -> bool:
        """A JPEG the GPU path reproduces: RGB or grey, no EXIF rotation, within the pixel budget, big enough."""
        from PIL import Image

        try:
            with Image.open(path) as image:  # reads the header only
                if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                    return False
                if image.width * image.height > max_pixels or image.getexif().get(0x0112, 1) != 1:
                    return False
                return self.pre.fits(image)
        except Exception:  # noqa: BLE001 - the CPU path reports what is wrong with it
            return False

    def decode(self, paths: Sequence[str]) -> Any:
        """``(n, 3, H, W)`` float32 on the GPU; raises if any file fails (the caller then takes the CPU path)."""
        import torch
        import torch.nn.functional as F
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(open(p, "rb").read()), dtype=torch.uint8) for p in paths]
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        mean = torch.tensor(self.pre.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.pre.std, device=self.device).view(1, 3, 1, 1)
        out = []
        for image in images:
            width, height = self.pre.target_size(image.shape[2], image.shape[1])
            resized = F.interpolate(image[None].float(), size=(height, width), mode="bicubic", antialias=True,
                                    align_corners=False).clamp_(0, 255)
            if self.pre.crop is not None:
                crop_h, crop_w = self.pre.crop
                top, left = (height - crop_h) // 2, (width - crop_w) // 2
                resized = resized[:, :, top:top + crop_h, left:left + crop_w]
            out.append(resized.round_())  # Pillow yields 8-bit pixels: round as it does
        batch = torch.cat(out)
        return {"pixel_values": ((batch * self.pre.scale - mean) / std).contiguous()}


def decode_on_gpu(decoder: GpuJpegDecoder, sources: Sequence[Any], max_pixels: int,
                  cpu_decode: Callable[[list[Any]], Any]) -> tuple[list[Any], Any, list[Any]]:
    """``(good sources, pixels, problems)`` for a batch: eligible JPEGs on the GPU, the rest by ``cpu_decode``
    (which returns an object with ``sources``, ``pixels``, ``problems``); order follows the returned sources."""
    import torch

    fits = [decoder.eligible(s.path, max_pixels) for s in sources]
    on_gpu = [s for s, ok in zip(sources, fits) if ok]
    rest = [s for s, ok in zip(sources, fits) if not ok]
    parts, good = [], []
    if on_gpu:
        try:
            parts.append(decoder.decode([s.path for s in on_gpu]))
            good += on_gpu
        except Exception as exc:  # noqa: BLE001 - e.g. a JPEG variant nvjpeg refuses
            log.debug("GPU JPEG decoding failed (%s); decoding this batch on the CPU", exc)
            rest, parts, good = list(sources), [], []
    problems: list[Any] = []
    if rest:
        fallback = cpu_decode(rest)
        problems = list(fallback.problems)
        if fallback.sources:
            parts.append(stage(fallback.pixels, decoder.device))
            good += fallback.sources
    if not parts:
        return [], None, problems
    pixels = torch.cat([p["pixel_values"] for p in parts])
    # Back to input order (GPU part first, CPU part after, above): records come out in input order.
    position = {id(s): i for i, s in enumerate(sources)}
    order = sorted(range(len(good)), key=lambda i: position[id(good[i])])
    index = torch.tensor(order, device=pixels.device)
    return [good[i] for i in order], {"pixel_values": pixels.index_select(0, index)}, problems


# --------------------------------------------------------------------------------------------- FAISS


def gpu_search_index(index: Any) -> Any:
    """``index`` on all GPUs for searching when the GPU build of FAISS sees some; else ``index`` itself.

    For the index reader to call after opening (search side only; the file on disk stays the CPU index).
    Kinds the GPU build cannot hold (HNSW) stay on the CPU.
    """
    import faiss

    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None or get_num_gpus() <= 0:  # index_cpu_to_all_gpus returns an empty index then
        return index
    try:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True
        options.useFloat16 = False
        return faiss.index_cpu_to_all_gpus(index, co=options)
    except (RuntimeError, AttributeError) as exc:
        log.info("FAISS index stays on the CPU (%s)", str(exc).strip().splitlines()[-1] if str(exc) else exc)
        return index
