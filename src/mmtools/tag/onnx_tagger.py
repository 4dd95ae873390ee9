"""A trained tagger on ONNX Runtime (its export: mmtools.tag.onnx_export): numpy in and out, with neither
torch nor transformers imported. It answers what ``mmtools.tag.trained.tag_records`` asks of a tagger, as
``TrainedTagger`` does, with the same probabilities (to the export's checked tolerance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from mmtools.tag.batches import Sample
from mmtools.tag.onnx_export import TOKENIZER, TaggerExport
from mmtools.tag.trained import TaggerBase
from mmtools.text.prepare import TextPreparer, TextRules


def tokens_for(export_dir: Path, tagger_dir: Path,
               settings: dict[str, Any]) -> Callable[[list[str]], tuple[dict[str, Any], list]]:
    """The tokenizer the export settled on (``settings["tokenizer"]``): its bare fast tokenizer, padded and
    truncated as the tagger's transformers tokenizer does, or that tokenizer itself (slow ones, as PhoBERT's)."""
    rules = settings["text_rules"]
    if settings.get("tokenizer") == "tokenizers":
        from mmtools.models.onnx_encoder import FastTokens

        return FastTokens(export_dir / TOKENIZER, rules["max_length"], rules.get("padding") == "max_length",
                          settings.get("pad_id") or 0, settings.get("padding_side", "right"))
    from mmtools.models.onnx_encoder import _TransformersTokens

    return _TransformersTokens(str(tagger_dir), "text", _rules(rules))


def _rules(values: dict[str, Any]) -> TextRules:
    return TextRules(**{k: v for k, v in values.items() if k in TextRules.__dataclass_fields__})


class OnnxBatches:
    """What ``predict`` asks of a tagger's batches: text preparation and the image size to decode at."""

    def __init__(self, meta: dict[str, Any], image_dir: Path):
        rules = meta.get("text_rules")
        self.rules = _rules(rules) if rules else None
        self._preparer = TextPreparer(self.rules) if self.rules is not None else None
        self.image_size: int | None = meta.get("image_size")
        self._fast = None
        if meta.get("fast_images"):
            from mmtools.models.image_preprocess import FastImagePreprocessor

            self._fast = FastImagePreprocessor.from_dict(meta["fast_images"])
        self._image_dir = image_dir
        self._processor: Any = None

    def prepare_texts(self, texts: Sequence[str]) -> list[str]:
        if not texts or self._preparer is None:
            return list(texts)
        return self._preparer(list(texts))

    def pixels(self, images: Sequence[Any]) -> Any:
        if self._fast is not None and all(self._fast.fits(image) for image in images):
            return self._fast.as_array(images)
        if self._processor is None:  # an image the fast path cannot take (smaller than a crop): the processor
            from transformers import AutoImageProcessor

            self._processor = AutoImageProcessor.from_pretrained(str(self._image_dir), local_files_only=True)
        return self._processor(images=list(images), return_tensors="np")["pixel_values"].astype("float32")


class OnnxTagger(TaggerBase):
    """A loaded tagger whose branches run on ONNX Runtime (CPU)."""

    def __init__(self, name: str, directory: Path, manifest: dict[str, Any], export: TaggerExport):
        super().__init__(name, manifest)
        self.device = "cpu"
        self.runtime = "onnx"
        self.export = export
        self.directory = Path(directory)
        self.batches = OnnxBatches(export.meta, Path(directory) / "image")
        self._tokens: Any = None
        self._sessions: dict[str, Any] = {}

    def _session(self, branch: str) -> Any:
        found = self._sessions.get(branch)
        if found is None:
            from mmtools.models.onnx_export import session

            found = self._sessions[branch] = session(self.export.path(branch))
        return found

    def _logits(self, branch: str, examples: Sequence[Sample]) -> Any:
        import numpy as np

        meta = self.export.meta
        if branch == "text":
            if self._tokens is None:
                self._tokens = tokens_for(self.export.directory, self.directory, meta)
            arrays = self._tokens([e.text for e in examples])[0]
        else:
            arrays = {"pixel_values": np.ascontiguousarray(self.batches.pixels([e.image for e in examples]),
                                                           dtype=np.float32)}
        inputs = {name: arrays[name] for name in meta[f"{branch}_inputs"]}
        return self._session(branch).run(None, inputs)[0].astype(np.float32)

    def probabilities(self, examples: Sequence[Sample]) -> Any:
        """An (n, labels) array of sigmoid outputs; a two-tower (late fusion) tagger averages the logits of the
        heads of the modalities each record has, as the network does."""
        import numpy as np

        examples = list(examples)
        total = np.zeros((len(examples), len(self.labels)), np.float32)
        count = np.zeros((len(examples), 1), np.float32)
        for branch, present in (("text", [e.text is not None for e in examples]),
                                ("image", [e.image is not None for e in examples])):
            rows = [i for i, has in enumerate(present) if has]
            if not rows or not getattr(self.spec, f"uses_{branch}"):
                continue
            total[rows] += self._logits(branch, [examples[i] for i in rows])
            count[rows] += 1
        logits = total / np.maximum(count, 1.0)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
