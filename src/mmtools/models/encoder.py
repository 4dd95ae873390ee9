"""The model abstraction every command uses: images and texts in, L2-normalised float32 vectors out.

An Encoder is not tied to one model family: the Hugging Face dual encoders (CLIP, SigLIP, SigLIP 2,
VisionTextDualEncoder) implement it today; models trained by mmtools and a warm model server can implement
it later without the pipeline, the index or search noticing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from mmtools.text.prepare import TextRules

ImageBatch = Any  # whatever an encoder's preprocessing produces; opaque to the pipeline


class Encoder(ABC):
    """A loaded model. ``name`` is what records and indexes store to say which model made a vector."""

    name: str
    dim: int
    device: str
    text_rules: "TextRules"
    location: str = ""  # the directory or hub id it was loaded from
    family: str = "hf-dual-encoder"
    runtime: str = "torch"  # what runs the forward passes (mmtools.models.runtime)

    @cached_property
    def fingerprint(self) -> str:
        """What records and indexes compare to tell models apart (see mmtools.models.fingerprint)."""
        from mmtools.models.fingerprint import model_fingerprint

        return model_fingerprint(self.location or self.name, self.text_rules, self.family)

    # -- images: preprocessing is split from the forward pass so the pipeline can run it in worker threads
    @property
    def image_size(self) -> int | None:
        """The side length the model resizes images to; lets decoders shrink large JPEGs cheaply."""
        return None

    @abstractmethod
    def preprocess_images(self, images: Sequence["Image.Image"]) -> ImageBatch:
        """Turn RGB images into a model-ready batch. Thread-safe; runs on the CPU."""

    @abstractmethod
    def encode_image_batch(self, batch: ImageBatch) -> "np.ndarray":
        """Forward pass on a preprocessed batch: an (n, dim) float32 array of unit vectors."""

    def encode_images(self, images: Sequence["Image.Image"]) -> "np.ndarray":
        return self.encode_image_batch(self.preprocess_images(images))

    # -- batch jobs: a runtime whose forward pass scales poorly over cores may run several batches at once
    @property
    def image_batches_at_once(self) -> int:
        """How many ``encode_image_batch_alone`` calls a batch job may run at once (from as many threads)."""
        return 1

    def encode_image_batch_alone(self, batch: ImageBatch) -> "np.ndarray":
        """``encode_image_batch`` on a share of the cores, for one of ``image_batches_at_once`` calls at once."""
        return self.encode_image_batch(batch)

    # -- texts
    @abstractmethod
    def encode_texts(
        self, texts: Sequence[str], on_truncated: Callable[[int], None] | None = None
    ) -> "np.ndarray":
        """Apply the model's text rules, tokenise and encode: an (n, dim) float32 array of unit vectors.

        ``on_truncated(i)`` is called for each text longer than the model's limit (it is truncated).
        """

    # -- queries
    def for_index(self, info: Any, sample: Callable[[], Any] | None = None) -> "Encoder":
        """The encoder to answer queries against the index ``info`` (an IndexInfo) with; ``sample`` gives some
        of the index's vectors. Itself, unless a runtime has towers to choose between (mmtools.models.agreement)."""
        return self

    @property
    def query_key(self) -> str:
        """What a cached query vector is keyed by (mmtools.models.query_cache)."""
        return f"{self.fingerprint}/{self.runtime}"

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "fingerprint": self.fingerprint, "dim": self.dim, "device": self.device,
                "runtime": self.runtime}
