"""The shared model cache: a model is named once, loaded once per process, placed on the best device, reused."""

from __future__ import annotations

import threading
from typing import Callable

from mmtools.errors import ModelError
from mmtools.models.device import choose_device
from mmtools.models.encoder import Encoder
from mmtools.models.registry import ModelRef, resolve_model

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


# Model families by the name a manifest gives (mmtools.json "family"). mmtools-trained models register here;
# taggers load through mmtools.tag.trained.TrainedTagger (`mmtools tag --model`), and as encoders say so.
FAMILIES: dict[str, EncoderFactory] = {"hf-dual-encoder": _hf_dual_encoder, "two-tower": _two_tower,
                                       "mmtools-tagger": _tagger_is_no_encoder}


class ModelCache:
    def __init__(self) -> None:
        self._encoders: dict[tuple[str, str], Encoder] = {}
        self._lock = threading.Lock()
        self._obtainable: set[str] = set()  # hub models known to be cached or downloadable: checked once

    def get(self, model: str | None = None, device: str | None = None) -> Encoder:
        ref = resolve_model(model)
        if ref.family == "hf-dual-encoder" and ref.name not in self._obtainable:
            _hf_dual_available(ref)  # an offline machine hears so before torch is even imported
            self._obtainable.add(ref.name)
        chosen = choose_device(device)
        key = (ref.name, chosen)
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

    def clear(self) -> None:
        with self._lock:
            self._encoders.clear()
            self._obtainable.clear()


default_cache = ModelCache()


def load_encoder(model: str | None = None, device: str | None = None) -> Encoder:
    """The process-wide encoder for ``model`` on ``device`` (``MMTOOLS_MODEL`` / ``MMTOOLS_DEVICE`` by default)."""
    import os

    return default_cache.get(model, device or os.environ.get("MMTOOLS_DEVICE"))
