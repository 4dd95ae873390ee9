"""Model registry and the shared, device-aware model cache. Importing this package is cheap."""

from mmtools.models.cache import FAMILIES, ModelCache, default_cache, load_encoder
from mmtools.models.encoder import Encoder
from mmtools.models.registry import ALIASES, DEFAULT_MODEL, ModelRef, resolve_model

__all__ = ["ALIASES", "DEFAULT_MODEL", "FAMILIES", "Encoder", "ModelCache", "ModelRef", "default_cache",
           "load_encoder", "resolve_model"]
