"""An LRU of query vectors: a repeated query (a web page reloaded, the next page of hits, the same search run
again against a warm server) is answered without the text tower.

Keyed by the encoder's ``query_key`` (fingerprint and the tower that encodes queries: an int8 tower's vector
is not the fp32 one's) and the query as typed, in Unicode NFC with its whitespace tidied. Thread-safe.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import OrderedDict
from typing import Any, Sequence

QUERY_CACHE_SIZE = 1024  # 768-d float32: 3 KB a query, 3 MB in all


def normalise_query(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


class QueryVectorCache:
    def __init__(self, size: int = QUERY_CACHE_SIZE):
        self.size = size
        self._vectors: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def vectors(self, encoder: Any, texts: Sequence[str]) -> Any:
        """The (n, dim) query vectors of ``texts``, encoding only those not seen before (in one batch)."""
        import numpy as np

        from mmtools.embed import encode_query_texts

        prefix = getattr(encoder, "query_key", None) or f"{type(encoder).__name__}@{id(encoder)}"
        keys = [(prefix, normalise_query(text)) for text in texts]
        found: dict[int, Any] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[i] = vector
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            encoded = encode_query_texts(encoder, [texts[i] for i in missing])
            with self._lock:
                for i, vector in zip(missing, encoded):
                    found[i] = vector
                    self._vectors[keys[i]] = vector
                    self._vectors.move_to_end(keys[i])
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return np.stack([found[i] for i in range(len(keys))]) if keys else np.zeros((0, 0), np.float32)

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()


default_query_cache = QueryVectorCache()
