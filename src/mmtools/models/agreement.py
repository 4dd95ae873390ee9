"""Which towers of an ONNX export answer queries against one index.

* An index whose fingerprint ends in ``+int8`` holds vectors of the int8 image tower (embed-images --int8):
  it is queried through the encoder that makes such vectors, and by no other.
* The int8 text tower answers queries when the runtime allows it (``onnx``, ``auto``), it passed the probe
  texts at export, and on this index its top-10 neighbours overlap fp32's (>= INT8_MIN_OVERLAP over a sample
  of the index's own vectors) with every probe vector within INT8_MIN_COSINE. The figures are measured once
  per index and state (path, record count) and kept in the export's agreement.json (`mmtools models info`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from mmtools.errors import ModelError
from mmtools.models.onnx_export import (INDEX_SAMPLE, INT8_MIN_COSINE, INT8_MIN_OVERLAP, OVERLAP_K, PROBE_TEXTS,
                                        _min_cosine, record_index_agreement, top_k_overlap)

if TYPE_CHECKING:
    from mmtools.index.backends import IndexBackend

log = logging.getLogger("mmtools")


def query_variant(encoder: Any, info: Any, sample: Callable[[], Any] | None) -> Any:
    """The variant of ``encoder`` (an OnnxEncoder) that should encode queries for the index ``info``."""
    from mmtools.models.onnx_encoder import INT8_IMAGES

    image_int8 = bool(info.fingerprint) and info.fingerprint == encoder.export.fingerprint + INT8_IMAGES
    if image_int8 and not encoder.export.has("image", int8=True):
        raise ModelError(f"the index was embedded with the int8 image tower of {encoder.name}, which is not "
                         "exported on this machine",
                         hint=f"export it: mmtools models export {encoder.name} --int8")
    text_int8 = bool(encoder.int8_queries and encoder.export.int8_text_ok and encoder.export.has("text", int8=True)
                     and sample is not None and _agrees(encoder, info, sample))
    return encoder.variant(text_int8=text_int8, image_int8=image_int8)


def index_key(info: Any) -> str:
    return f"{info.fingerprint or info.model}@{info.count}"


DECIDED_MAX = 256  # (export, index state) pairs remembered: a warm server meets few, a long-lived one many


class _Decided:
    """What was decided per (export, index state), least recently used first out: a warm server reads no
    file per query, and a server that meets index after index (each update is a new state) stays bounded."""

    def __init__(self, limit: int = DECIDED_MAX):
        from collections import OrderedDict

        self.limit = limit
        self._known: "OrderedDict[tuple[str, str], bool]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> bool | None:
        with self._lock:
            found = self._known.get(key)
            if found is not None:
                self._known.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: bool) -> None:
        with self._lock:
            self._known[key] = value
            self._known.move_to_end(key)
            while len(self._known) > self.limit:
                self._known.popitem(last=False)

    def __len__(self) -> int:
        return len(self._known)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


_decided = _Decided()


def _agrees(encoder: Any, info: Any, sample: Callable[[], Any]) -> bool:
    key = index_key(info)
    memo = (str(encoder.export.directory), key)
    decided = _decided.get(memo)
    if decided is not None:
        return decided
    known = encoder.export.agreement().get("indexes", {}).get(key)
    if known is None:
        known = measure_agreement(encoder, sample())
        if known is None:
            return False
        record_index_agreement(encoder.export, key, known)
        if not known["ok"]:
            log.warning("the int8 text tower of %s disagrees with fp32 on this index (top-%d overlap %.3f, "
                        "cosine %.4f); queries use fp32", encoder.name, OVERLAP_K, known["top10_overlap"],
                        known["min_cosine"])
    _decided.put(memo, bool(known.get("ok")))
    return bool(known.get("ok"))


def measure_agreement(encoder: Any, corpus: Any) -> dict[str, Any] | None:
    """int8 against fp32 query vectors: the lowest cosine on the probe texts, and the mean top-10 overlap in
    ``corpus`` (vectors, e.g. a sample of an index); None when there is no corpus to measure on."""
    import numpy as np

    if corpus is None or len(corpus) == 0:
        return None
    corpus = np.asarray(corpus, dtype=np.float32)
    fp32 = encoder.variant(text_int8=False).encode_texts(PROBE_TEXTS)
    int8 = encoder.variant(text_int8=True).encode_texts(PROBE_TEXTS)
    if corpus.shape[1] != fp32.shape[1]:
        return None
    cosine = _min_cosine(fp32, int8)
    overlap = top_k_overlap(fp32, int8, corpus)
    return {"min_cosine": round(cosine, 6), "top10_overlap": round(overlap, 4), "sample": int(len(corpus)),
            "probes": len(PROBE_TEXTS), "ok": cosine >= INT8_MIN_COSINE and overlap >= INT8_MIN_OVERLAP,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def index_sample(reader: "IndexBackend", count: int = INDEX_SAMPLE) -> Any:
    """Up to ``count`` of an index's own vectors, spread over it (None when it keeps none it can give): any
    backend's ``sample_vectors`` (mmtools.index.backends.IndexBackend), FAISS and Milvus alike."""
    from mmtools.errors import IndexFileError

    try:
        return reader.sample_vectors(count)
    except (IndexFileError, RuntimeError, ValueError) as exc:  # an ivfpq index that keeps no exact vectors, say
        log.debug("no vectors to sample from %s: %s", getattr(reader, "path", "index"), exc)
        return None
