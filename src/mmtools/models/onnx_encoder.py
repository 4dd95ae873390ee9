"""The Encoder of an ONNX export (mmtools.models.onnx_export): ONNX Runtime on the CPU, numpy in and out.

Loading imports neither torch nor transformers when the export has a fast tokenizer and the model's image
preprocessing is one mmtools reproduces (CLIP, SigLIP): then a cold `mmtools search` pays for ONNX Runtime,
the tokenizers library and numpy only. Sessions are made on first use, so a text search never loads the
image tower. Texts are tokenised once per process (an LRU of prepared text -> token ids).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from mmtools.models.encoder import Encoder, ImageBatch
from mmtools.models.onnx_export import Export
from mmtools.models.registry import ModelRef
from mmtools.text.prepare import TextPreparer, TextRules

INT8_IMAGES = "+int8"  # fingerprint suffix of vectors from the int8 image tower: their own model for matching
TOKEN_CACHE = 4096


class FastTokens:
    """A Hugging Face fast tokenizer run bare (the tokenizers library), padded and truncated as transformers
    does for the model's text rules: ``(arrays by input name, indices of truncated texts)``."""

    def __init__(self, path: Path, max_length: int, fixed_length: bool, pad_id: int, padding_side: str = "right",
                 pad_token: str | None = None):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path))
        if pad_token is not None:  # named by token (towers exported elsewhere): its id, else ``pad_id``
            found = self._tokenizer.token_to_id(pad_token)
            pad_id = pad_id if found is None else found
        self._tokenizer.no_padding()  # padded below; a saved tokenizer.json may carry its own padding
        self._tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.fixed_length = fixed_length
        self.pad_id = int(pad_id)
        self.left = padding_side == "left"
        self._encode = lru_cache(maxsize=TOKEN_CACHE)(self._encode_one)

    def _encode_one(self, text: str) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
        encoding = self._tokenizer.encode(text)
        return tuple(encoding.ids), tuple(encoding.type_ids), bool(encoding.overflowing)

    def __call__(self, texts: Sequence[str]) -> tuple[dict[str, Any], list[int]]:
        import numpy as np

        encoded = [self._encode(text) for text in texts]
        length = self.max_length if self.fixed_length else max((len(ids) for ids, _, _ in encoded), default=1)
        ids = np.full((len(texts), length), self.pad_id, dtype=np.int64)
        types = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.int64)
        for row, (tokens, type_ids, _) in enumerate(encoded):
            span = slice(length - len(tokens), length) if self.left else slice(0, len(tokens))
            ids[row, span] = tokens
            types[row, span] = type_ids
            mask[row, span] = 1
        truncated = [i for i, (_, _, cut) in enumerate(encoded) if cut]
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, truncated


class OnnxEncoder(Encoder):
    """A model's towers on ONNX Runtime. ``text_int8``: the int8 text tower (the query path, where it agrees);
    ``image_int8``: the int8 image tower as its own model (embed-images --int8: a fingerprint of its own);
    ``int8_queries``: the runtime allows int8 where it agrees with fp32 (``onnx``, ``auto``): ``for_index`` may
    pick the int8 text tower for an index on which it agrees, and images are embedded with the int8 image tower
    where the export's real-size check passed (``Export.int8_image_ok``), under the model's fingerprint."""

    runtime = "onnx"

    def __init__(self, export: Export, ref: ModelRef, *, text_int8: bool = False, image_int8: bool = False,
                 int8_queries: bool = False):
        meta = export.meta
        self.int8_queries = int8_queries  # may for_index choose the int8 text tower (runtime onnx / auto)
        self.export = export
        self.ref = ref
        self.name = ref.name
        self.location = ref.location
        self.family = ref.family
        self.device = "cpu"
        self.dim = int(meta["dim"])
        self.text_rules = TextRules(**meta["text_rules"])
        self.text_int8 = text_int8
        self.image_int8 = image_int8
        self._meta = meta
        self._prepare_text = TextPreparer(self.text_rules)
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._tokens: Any = None
        self._fast_images = None
        if meta.get("fast_images"):
            from mmtools.models.image_preprocess import FastImagePreprocessor

            self._fast_images = FastImagePreprocessor.from_dict(meta["fast_images"])
        self._processor: Any = None
        self._variants: dict[tuple[bool, bool], "OnnxEncoder"] = {(text_int8, image_int8): self}

    @property
    def fingerprint(self) -> str:  # type: ignore[override]
        return self.export.fingerprint + (INT8_IMAGES if self.image_int8 else "")

    @property
    def images_in_int8(self) -> bool:
        """Whether images go through the int8 image tower (on request, or where it agrees with fp32)."""
        return self.image_int8 or (self.int8_queries and self.export.int8_image_ok)

    @property
    def precision(self) -> str:
        return f"text {'int8' if self.text_int8 else 'fp32'}, image {'int8' if self.images_in_int8 else 'fp32'}"

    @property
    def query_key(self) -> str:
        """What a cached query vector is keyed by: the same fingerprint through another tower is another vector."""
        return f"{self.fingerprint}/onnx/{'int8' if self.text_int8 else 'fp32'}"

    @property
    def image_size(self) -> int | None:
        return self._meta.get("image_size")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "runtime": "onnx", "precision": self.precision}

    def logit_scale_and_bias(self) -> tuple[float, float | None]:
        if self._meta.get("logit_unknown"):
            from mmtools.errors import ModelError
            from mmtools.models.runtime import TORCH_HINT

            raise ModelError(f"model {self.name} holds only its ONNX towers, not the logit scale and bias that "
                             "zero-shot tag probabilities need",
                             hint=f"tag with the PyTorch model it was converted from; {TORCH_HINT}")
        return float(self._meta.get("logit_scale") or 100.0), self._meta.get("logit_bias")

    def variant(self, *, text_int8: bool | None = None, image_int8: bool | None = None) -> "OnnxEncoder":
        """The same export with other towers; sessions already made are shared."""
        key = (self.text_int8 if text_int8 is None else text_int8,
               self.image_int8 if image_int8 is None else image_int8)
        with self._lock:
            found = self._variants.get(key)
            if found is None:
                found = OnnxEncoder(self.export, self.ref, text_int8=key[0], image_int8=key[1],
                                    int8_queries=self.int8_queries)
                found._sessions, found._variants, found._lock = self._sessions, self._variants, self._lock
                found._tokens, found._processor = self._tokens, self._processor
                self._variants[key] = found
            return found

    def for_index(self, info: Any, sample: Callable[[], Any] | None = None) -> Encoder:
        from mmtools.models.agreement import query_variant

        return query_variant(self, info, sample)

    # -------------------------------------------------------------------------------------------- sessions
    def _session(self, tower: str, int8: bool, threads: int | None = None) -> Any:
        name = f"{tower}{'.int8' if int8 else ''}{f'.{threads}t' if threads else ''}"
        found = self._sessions.get(name)
        if found is None:
            from mmtools.models.onnx_export import session

            with self._lock:
                found = self._sessions.get(name)
                if found is None:  # images are a throughput job: the tower's threads sleep when idle
                    found = self._sessions[name] = session(self.export.path(tower, int8), threads=threads,
                                                           spin=tower != "image")
        return found

    # ---------------------------------------------------------------------------------------------- images
    def preprocess_images(self, images: Sequence[Any]) -> ImageBatch:
        if self._fast_images is not None and all(self._fast_images.fits(image) for image in images):
            return {"pixel_values": self._fast_images.as_array(images)}
        return {"pixel_values": self._image_processor()(images=list(images), return_tensors="np")["pixel_values"]}

    def encode_image_batch(self, batch: ImageBatch) -> Any:
        return self._encode_pixels(batch, None)

    @property
    def image_batches_at_once(self) -> int:
        # ONNX Runtime's tower gains little from a second core (int8 on 2 idle AVX2 cores: 3.8-4.2 images/s on
        # two threads, 5.0 with two batches at once on one thread each, for less CPU): a batch job runs one
        # batch per physical core, each on a one-thread session (sessions run concurrently; weights loaded once).
        from mmtools.models.runtime import physical_cores

        return max(1, physical_cores())

    def encode_image_batch_alone(self, batch: ImageBatch) -> Any:
        return self._encode_pixels(batch, 1 if self.image_batches_at_once > 1 else None)

    def _encode_pixels(self, batch: ImageBatch, threads: int | None) -> Any:
        import numpy as np

        pixels = batch["pixel_values"] if isinstance(batch, dict) else batch
        if not isinstance(pixels, np.ndarray):  # a torch tensor from elsewhere
            pixels = pixels.detach().cpu().numpy()
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)  # no copy when it is already so
        return self._run("image", self.images_in_int8, {"pixel_values": pixels}, threads)

    def _run(self, tower: str, int8: bool, inputs: dict[str, Any], threads: int | None = None) -> Any:
        """Unit vectors from a tower: an mmtools export's first output is already so; towers exported elsewhere
        (mmtools.models.onnx_prebuilt) name the output to take, which is normalised here."""
        run = self._session(tower, int8, threads)
        output = getattr(self.export, "output_name", None)
        if output is None:
            return run.run(None, inputs)[0]
        import numpy as np

        vectors = np.asarray(run.run([output(tower, run)], inputs)[0], dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def _image_processor(self) -> Any:
        if self._processor is None:
            from transformers import AutoImageProcessor

            from mmtools.models.fingerprint import model_directory

            directory = model_directory(self.location) / self._meta.get("image_dir", ".")
            self._processor = AutoImageProcessor.from_pretrained(str(directory), local_files_only=True)
        return self._processor

    # ----------------------------------------------------------------------------------------------- texts
    def encode_texts(self, texts: Sequence[str], on_truncated: Callable[[int], None] | None = None) -> Any:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), np.float32)
        prepared = self._prepare_text(list(texts))
        arrays, truncated = self._tokenize(prepared)
        if on_truncated is not None:
            for i in truncated:
                on_truncated(i)
        names = self._meta.get("text_inputs") or [i.name for i in self._session("text", self.text_int8).get_inputs()]
        if "attention_mask" in names and not self.text_rules.attention_mask:  # trained without one (SigLIP)
            arrays = {**arrays, "attention_mask": np.ones_like(arrays["attention_mask"])}
        return self._run("text", self.text_int8, {name: arrays[name] for name in names})

    def _tokenize(self, prepared: list[str]) -> tuple[dict[str, Any], list[int]]:
        if self._tokens is None:
            self._tokens = self._make_tokenizer()
        return self._tokens(prepared)

    def _make_tokenizer(self) -> Callable[[list[str]], tuple[dict[str, Any], list[int]]]:
        rules, meta = self.text_rules, self._meta
        if meta.get("tokenizer") == "tokenizers":
            return FastTokens(self.export.directory / "tokenizer.json", rules.max_length,
                              rules.padding == "max_length", meta.get("pad_id") or 0,
                              meta.get("padding_side", "right"), meta.get("pad_token"))
        return _TransformersTokens(self.location, meta.get("tokenizer_dir", "."), rules)


class _TransformersTokens:
    """The model's own transformers tokenizer (slow tokenizers such as PhoBERT's), numpy out."""

    def __init__(self, location: str, subdir: str, rules: TextRules):
        from transformers import AutoTokenizer

        from mmtools.models.fingerprint import model_directory

        self._tokenizer = AutoTokenizer.from_pretrained(str(model_directory(location) / subdir),
                                                        local_files_only=True)
        self.rules = rules

    def __call__(self, prepared: list[str]) -> tuple[dict[str, Any], list[int]]:
        padding = "max_length" if self.rules.padding == "max_length" else True
        tokens = self._tokenizer(prepared, padding=padding, truncation=True, max_length=self.rules.max_length,
                                 return_tensors="np")
        full = self._tokenizer(prepared, truncation=False)["input_ids"]
        truncated = [i for i, ids in enumerate(full) if len(ids) > self.rules.max_length]
        return {k: v.astype("int64") for k, v in tokens.items()}, truncated
