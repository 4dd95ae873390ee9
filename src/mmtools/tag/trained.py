"""Using a trained tagger: load its directory, turn records into examples, and tag them."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from mmtools.embed import batched
from mmtools.errors import ModelError, Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, load_image
from mmtools.models.registry import ModelRef, resolve_model
from mmtools.records import Record, field_texts, record_id
from mmtools.tag.batches import BatchMaker, Sample, to_device
from mmtools.tag.labels import Thresholds, select_tags
from mmtools.tag.modes import MULTIMODAL, mode_of
from mmtools.tag.towers import FAMILY, load_tagger_parts

log = logging.getLogger("mmtools")


def tagger_manifest(ref: ModelRef) -> tuple[Path, dict[str, Any]] | None:
    """The tagger directory and manifest a model name refers to (a training run's directory resolves to its
    best model), or None when it is no tagger."""
    if ref.is_local and ref.family == FAMILY:
        return Path(ref.location), ref.manifest
    return None


def is_tagger(model: str | None) -> bool:
    return model is not None and tagger_manifest(resolve_model(model)) is not None


def describe_modalities(spec: Any) -> str:
    if spec.modality == "both":
        return f"text and image ({spec.fusion} fusion)"
    return f"{spec.modality} only"


RETRAIN_HINT = ("retrain it with `mmtools train tagger --modality-dropout 0.3` (the default) to tag records that "
                "lack one, or use --fusion late")


class TaggerBase:
    """What every loaded tagger holds from its manifest: labels, thresholds (tuned per mode), the network spec.
    ``probabilities(examples)`` gives an (n, labels) array of sigmoid outputs."""

    device = "cpu"
    runtime = "torch"

    def __init__(self, name: str, manifest: dict[str, Any]):
        from mmtools.tag.spec import TaggerSpec

        self.name = name
        try:
            self.spec = TaggerSpec.from_dict(manifest["tagger"])
        except (KeyError, TypeError) as exc:
            raise ModelError(f"tagger {name} cannot be loaded: its manifest has no valid network ({exc})",
                             hint="it may be incomplete or from another mmtools; train it again") from None
        self.labels: list[str] = list(self.spec.labels)
        self.thresholds = {label: float(manifest.get("thresholds", {}).get(label, 0.5)) for label in self.labels}
        # Thresholds tuned for each one-modality mode ("text-only", "image-only"), where training measured them.
        self.mode_thresholds: dict[str, dict[str, float]] = {
            mode: {label: float(values.get(label, 0.5)) for label in self.thresholds}
            for mode, values in (manifest.get("mode_thresholds") or {}).items() if isinstance(values, dict)}
        self.training: dict[str, Any] = manifest.get("training") or {}  # what `train tagger` recorded

    def probabilities(self, examples: Sequence[Sample]) -> Any:
        raise NotImplementedError

    def effective_thresholds(self, threshold: float | None = None, per_label: dict[str, float] | None = None,
                             mode: str = MULTIMODAL) -> Thresholds:
        """The model's tuned thresholds for records read in ``mode`` (those tuned for it, else the model's);
        ``threshold`` replaces them all; ``per_label`` overrides some."""
        tuned = self.mode_thresholds.get(mode, self.thresholds)
        base = {} if threshold is not None else dict(tuned)
        return Thresholds(default=0.5 if threshold is None else threshold, per_label={**base, **(per_label or {})})


def _tagger_directory(ref: ModelRef) -> tuple[Path, dict[str, Any]]:
    found = tagger_manifest(ref)
    if found is None:
        raise ModelError(f"model {ref.name} is not a tagger (family {ref.family!r})",
                         hint="train one with `mmtools train tagger`, or use --labels for zero-shot tags")
    return found


class TrainedTagger(TaggerBase):
    """A loaded tagger on PyTorch."""

    def __init__(self, model: str, device: str | None = None):
        import torch

        from mmtools.models.device import choose_device

        ref = resolve_model(model)
        directory, manifest = _tagger_directory(ref)
        self.model, towers, _thresholds = load_tagger_parts(directory, manifest)
        super().__init__(ref.name, manifest)
        self.spec = self.model.spec
        self.batches = BatchMaker(towers)
        self.device = choose_device(device)
        self.model.to(self.device).eval()
        self._autocast = torch.float16 if self.device.startswith("cuda") else None

    def probabilities(self, examples: Sequence[Sample]) -> Any:
        import torch

        batch = to_device(self.batches(list(examples)), self.device)
        with torch.inference_mode():
            if self._autocast is not None:
                with torch.autocast("cuda", dtype=self._autocast):
                    logits = self.model(batch)["logits"]
            else:
                logits = self.model(batch)["logits"]
        return torch.sigmoid(logits.float()).cpu().numpy()


def load_tagger(model: str, device: str | None = None, runtime: str | None = None) -> TaggerBase:
    """The tagger ``model`` on ``runtime`` (mmtools.models.runtime): on ONNX Runtime where the runtime is ONNX
    and the tagger has (or, made now, gets) an export that agrees with PyTorch (mmtools.tag.onnx_export),
    else on PyTorch; a refused export is said once, in the log."""
    from mmtools.models.runtime import choose_runtime

    ref = resolve_model(model)
    directory, manifest = _tagger_directory(ref)
    if choose_runtime(runtime, device).engine == "onnx":
        from mmtools.tag.onnx_export import exportable, export_tagger, find_tagger_export
        from mmtools.tag.spec import TaggerSpec

        try:
            spec = TaggerSpec.from_dict(manifest["tagger"])
        except (KeyError, TypeError, AttributeError):
            spec = None  # PyTorch's loader says what is wrong with it
        if spec is not None and exportable(spec) is None:
            export = find_tagger_export(directory, manifest) or export_tagger(directory, manifest)
            if not export.refused:
                from mmtools.tag.onnx_tagger import OnnxTagger

                return OnnxTagger(ref.name, directory, manifest, export)
            log.warning("tagger %s runs on PyTorch: %s", ref.name, export.refused)
    return TrainedTagger(model, device)


@dataclass
class RecordInput:
    """What a record offers a tagger: its text (joined if a list), its image path, and what it declares absent."""

    text: str | None
    image: str | None
    no_text: bool  # the text field is present and null: the record says it has none
    no_image: bool


def record_input(record: Record, text_fields: Sequence[str], image_field: str = "path",
                 root: str | None = None) -> RecordInput:
    texts = [t for name in text_fields for t in (field_texts(record.get(name)) or []) if t.strip()]
    path = record.get(image_field)
    image = None
    if isinstance(path, str) and path:
        image = path if os.path.isabs(path) or root is None else os.path.join(root, path)
    from mmtools.tag.inputs import ImageFileRecord

    from_image_file = isinstance(record, ImageFileRecord)  # an image given as a file: it has no text
    return RecordInput(text=" ".join(texts) if texts else None, image=image,
                       no_text=from_image_file or all(name in record and record[name] is None
                                                      for name in text_fields),
                       no_image=image_field in record and record[image_field] is None)


def missing_modality(spec: Any, given: RecordInput, text_fields: Sequence[str],
                     image_field: str = "path") -> str | None:
    """Why a record cannot be tagged by a model of ``spec``, or None when it can."""
    needs = describe_modalities(spec)
    names = " or ".join(repr(f) for f in text_fields)
    if spec.modality == "text" and given.text is None:
        what = "an image but no text" if given.image else "no text"
        return f"record has {what} ({names}); this tagger reads {needs}"
    if spec.modality == "image" and given.image is None:
        what = "text but no image" if given.text else "no image"
        return f"record has {what} ({image_field!r}); this tagger reads {needs}"
    if spec.modality == "both":
        if given.text is None and given.image is None:
            return f"record has no text ({names}) and no image ({image_field!r})"
        lacking = "text" if given.text is None else "image" if given.image is None else None
        if lacking is None:
            return None
        declared = given.no_text if lacking == "text" else given.no_image
        if spec.learns_missing or (spec.allows_one_modality and declared):
            return None  # a tagger trained to stand in for a missing modality reads what there is
        field = names if lacking == "text" else repr(image_field)
        if spec.allows_one_modality:
            return (f"record has no {lacking} ({field}); this tagger reads {needs}; set {field} to null "
                    f"to tag it from its {'image' if lacking == 'text' else 'text'} alone")
        return f"record has no {lacking} ({field}); this tagger reads {needs} together; {RETRAIN_HINT}"
    return None


def examples_from_records(
    records: Iterable[Record], tagger: TrainedTagger, *, text_fields: Sequence[str] = ("text",),
    image_field: str = "path", root: str | None = None, on_problem: ProblemHandler = raise_problem,
) -> Iterator[tuple[Record, Sample]]:
    """Records the tagger can read, each with its (unprepared) Sample; the others reported one by one."""
    spec = tagger.spec
    for number, record in enumerate(records, 1):
        where = record_id(record, f"record {number}")
        given = record_input(record, text_fields, image_field, root)
        reason = missing_modality(spec, given, text_fields, image_field)
        if reason is not None:
            on_problem(Problem(where, reason + ", skipped"))
            continue
        yield record, Sample(id=where, text=given.text if spec.uses_text else None,
                              image=given.image if spec.uses_image else None)


def load_example_images(pairs: list[tuple[Record, Sample]], draft_size: int | None,
                        on_problem: ProblemHandler) -> list[tuple[Record, Sample]]:
    """Decode each example's image (reporting and dropping the unreadable ones)."""
    kept = []
    for record, example in pairs:
        if isinstance(example.image, str):
            try:
                example.image = load_image(example.image, draft_size=draft_size)
            except ImageDecodeError as exc:
                on_problem(Problem(example.image, f"{exc}, skipped"))
                continue
        kept.append((record, example))
    return kept


def predict(tagger: TrainedTagger, pairs: Iterable[tuple[Any, Sample]], *, batch_size: int = 32,
            on_problem: ProblemHandler = raise_problem) -> Iterator[tuple[Any, Sample, Any]]:
    """``(record, sample, probabilities)`` for each readable example, in order."""
    for chunk in batched(pairs, batch_size):
        chunk = load_example_images(chunk, tagger.batches.image_size, on_problem)
        if not chunk:
            continue
        prepared_texts = tagger.batches.prepare_texts([e.text for _, e in chunk if e.text is not None])
        texts = iter(prepared_texts)
        for _, example in chunk:
            if example.text is not None:
                example.text = next(texts)
        probabilities = tagger.probabilities([e for _, e in chunk])
        for (record, sample), row in zip(chunk, probabilities):
            yield record, sample, row


def sample_mode(sample: Sample) -> str:
    return mode_of(sample.text is not None, sample.image is not None)


def tag_records(records: Iterable[Record], tagger: TrainedTagger, *, threshold: float | None = None,
                per_label: dict[str, float] | None = None, top_k: int | None = None,
                text_fields: Sequence[str] = ("text",), image_field: str = "path", root: str | None = None,
                batch_size: int = 32, on_problem: ProblemHandler = raise_problem) -> Iterator[Record]:
    """Each readable record with ``tags``: the labels scoring at or above their thresholds (those of the mode
    it was read in), best first. A two-tower tagger's records also say which mode that was (``tag_mode``:
    "multimodal", "text-only" or "image-only")."""
    pairs = examples_from_records(records, tagger, text_fields=text_fields, image_field=image_field, root=root,
                                  on_problem=on_problem)
    thresholds = {mode: tagger.effective_thresholds(threshold, per_label, mode)
                  for mode in (MULTIMODAL, *tagger.mode_thresholds)}
    two_towers = tagger.spec.modality == "both"
    for record, sample, row in predict(tagger, pairs, batch_size=batch_size, on_problem=on_problem):
        mode = sample_mode(sample)
        tags = select_tags(tagger.labels, row, thresholds.get(mode, thresholds[MULTIMODAL]), top_k)
        yield {**record, "tags": tags, **({"tag_mode": mode} if two_towers else {})}
