"""The shared model cache: a model is named once, loaded once per process, placed on the best device, reused."""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

from mmtools.errors import ModelError, UsageError
from mmtools.models.device import choose_device
from mmtools.models.encoder import Encoder
from mmtools.models.registry import ModelRef, resolve_model
from mmtools.models.runtime import ENV as RUNTIME_ENV
from mmtools.models.runtime import TORCH_HINT, Runtime, choose_runtime, onnxruntime_installed, torch_installed

log = logging.getLogger("mmtools")

EncoderFactory = Callable[[ModelRef, str], Encoder]


def _hf_dual_available(ref: ModelRef) -> None:
    from mmtools.models.hf_dual import check_obtainable

    check_obtainable(ref)


def _hf_dual_encoder(ref: ModelRef, device: str) -> Encoder:
    from mmtools.models.hf_dual import HFDualEncoder

    return HFDualEncoder(ref, device)


def _two_tower(ref: ModelRef, device: str) -> Encoder:
    from mmtools.models.two_tower import TwoTowerEncoder

    return TwoTowerEncoder(ref, device)


def _tagger_is_no_encoder(ref: ModelRef, device: str) -> Encoder:
    raise ModelError(f"model {ref.name} is a tagger (mmtools train tagger), not an embedding model",
                     hint=f"tag with it: mmtools tag --model {ref.name}; embed and search with a retrieval model")


def _captioner_is_no_encoder(ref: ModelRef, device: str) -> Encoder:
    raise ModelError(f"model {ref.name} is a captioner (mmtools train captioner), not an embedding model",
                     hint=f"caption with it: mmtools caption --model {ref.name}; embed and search with a "
                          "retrieval model")


def _onnx_towers_only(ref: ModelRef, device: str) -> Encoder:
    raise UsageError(f"model {ref.name} is ONNX towers only: it runs on ONNX Runtime, on the CPU",
                     hint="leave --runtime at auto (or onnx) and the device at auto (or cpu)")


# Model families by the name a manifest gives (mmtools.json "family"). mmtools-trained models register here;
# taggers load through mmtools.tag.trained.TrainedTagger (`mmtools tag --model`), and as encoders say so.
FAMILIES: dict[str, EncoderFactory] = {"hf-dual-encoder": _hf_dual_encoder, "two-tower": _two_tower,
                                       "mmtools-tagger": _tagger_is_no_encoder,
                                       "captioner": _captioner_is_no_encoder,
                                       "onnx-dual-encoder": _onnx_towers_only}


class ModelCache:
    """Encoders by model, device and runtime. The runtime is chosen here (mmtools.models.runtime), never by a
    command: ONNX Runtime models are exported on first use (mmtools.models.onnx_export) and what cannot be
    exported runs on PyTorch."""

    def __init__(self) -> None:
        self._encoders: dict[tuple, Encoder] = {}
        self._lock = threading.RLock()  # an ONNX export loads the PyTorch model through the same cache
        self._obtainable: set[str] = set()  # hub models known to be cached or downloadable: checked once
        self._warned: set[str] = set()

    def get(self, model: str | None = None, device: str | None = None, runtime: str | None = None, *,
            int8_images: bool = False) -> Encoder:
        ref = resolve_model(model)
        if ref.family == "onnx-dual-encoder":
            return self._prebuilt(ref, runtime, device, int8_images)
        chosen = choose_runtime(runtime, device)
        if chosen.engine == "onnx":
            encoder = self._onnx(ref, chosen, int8_images)
            if encoder is not None:
                return encoder
        if int8_images:
            raise UsageError("int8 image encoding runs on ONNX Runtime",
                             hint="leave the runtime at auto (or onnx) on a CPU, or embed without int8")
        return self._torch(ref, device)

    def _torch(self, ref: ModelRef, device: str | None) -> Encoder:
        if ref.family == "hf-dual-encoder" and ref.name not in self._obtainable:
            _hf_dual_available(ref)  # an offline machine hears so before torch is even imported
            self._obtainable.add(ref.name)
        if not torch_installed():
            raise ModelError(f"model {ref.name} runs on PyTorch, which this install leaves out",
                             hint=f"{TORCH_HINT}; or use a model with ONNX towers (the default model has them)")
        chosen = choose_device(device)
        key = (ref.name, chosen, "torch")
        with self._lock:
            encoder = self._encoders.get(key)
            if encoder is None:
                factory = FAMILIES.get(ref.family)
                if factory is None:
                    raise ModelError(f"model {ref.name} is of family {ref.family!r}, which this mmtools "
                                     f"cannot load (known: {', '.join(sorted(FAMILIES))})",
                                     hint="upgrade mmtools")
                encoder = self._encoders[key] = factory(ref, chosen)
            return encoder

    def _onnx(self, ref: ModelRef, runtime: Runtime, int8_images: bool) -> Encoder | None:
        """The model on ONNX Runtime, exported first if need be; None when it cannot run there (said once)."""
        if ref.family not in FAMILIES or ref.family in ("mmtools-tagger", "captioner"):
            return None  # the PyTorch path says what is wrong with it
        key = (ref.name, "cpu", runtime.name, int8_images)
        with self._lock:
            encoder = self._encoders.get(key)
            if encoder is not None:
                return encoder
            from mmtools.models.onnx_export import export_model, find_export

            export = find_export(ref.location, ref.family, ref.manifest)
            if export is None or (int8_images and not export.refused and not export.has("image", int8=True)):
                export = export_model(self._torch(ref, "cpu"), int8_images=int8_images)
            if export.refused:
                if ref.name not in self._warned:
                    self._warned.add(ref.name)
                    log.warning("model %s runs on PyTorch: %s", ref.name, export.refused)
                return None
            if int8_images and not export.has("image", int8=True):
                figures = export.meta.get("agreement", {}).get("int8_image", {})
                raise ModelError(f"the int8 image tower of {ref.name} disagrees with fp32 (cosine "
                                 f"{figures.get('min_cosine')} on a probe image, below {figures.get('threshold')})",
                                 hint="embed without int8")
            from mmtools.models.onnx_encoder import OnnxEncoder

            encoder = self._encoders[key] = OnnxEncoder(export, ref, image_int8=int8_images,
                                                        int8_queries=runtime.int8_queries)
            return encoder

    def _prebuilt(self, ref: ModelRef, runtime: str | None, device: str | None, int8_images: bool) -> Encoder:
        """A model whose towers are already ONNX (mmtools.models.onnx_prebuilt): ONNX Runtime, fp32."""
        if (runtime or os.environ.get(RUNTIME_ENV) or "auto").strip().lower() == "torch" or \
                (device or "auto").split(":", 1)[0] not in ("auto", "cpu"):
            _onnx_towers_only(ref, device or "auto")
        if int8_images:
            raise UsageError(f"model {ref.name} has no int8 image tower here", hint="embed without --int8")
        if not onnxruntime_installed():
            raise UsageError(f"model {ref.name} runs on ONNX Runtime, which is not installed",
                             hint='pip install "mmtools[onnx]"')
        key = (ref.name, "cpu", "onnx-prebuilt")
        with self._lock:
            encoder = self._encoders.get(key)
            if encoder is None:
                from mmtools.models.onnx_encoder import OnnxEncoder
                from mmtools.models.onnx_prebuilt import open_prebuilt, prebuilt_directory

                export = open_prebuilt(prebuilt_directory(ref.location))
                encoder = self._encoders[key] = OnnxEncoder(export, ref)
            return encoder

    def clear(self) -> None:
        with self._lock:
            self._encoders.clear()
            self._obtainable.clear()


default_cache = ModelCache()


def load_encoder(model: str | None = None, device: str | None = None, runtime: str | None = None, *,
                 int8_images: bool = False) -> Encoder:
    """The process-wide encoder for ``model`` on ``device`` with ``runtime`` (``MMTOOLS_MODEL``,
    ``MMTOOLS_DEVICE``, ``MMTOOLS_RUNTIME`` by default). ``int8_images``: the int8 image tower, whose vectors
    are their own model (a fingerprint of their own)."""
    import os

    return default_cache.get(model, device or os.environ.get("MMTOOLS_DEVICE"), runtime, int8_images=int8_images)
