"""`eval tagging`: precision, recall and F1 of taggers on labelled examples, several models side by side."""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Sequence

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.tag.batches import Sample
from mmtools.tag.data import example_text
from mmtools.tag.metrics import tagging_report
from mmtools.tag.modes import IMAGE_ONLY, MODES, MULTIMODAL, TEXT_ONLY
from mmtools.tag.trained import (RecordInput, TrainedTagger, describe_modalities, missing_modality, predict,
                                 sample_mode)
from mmtools.train.data import Example, group_by_image

log = logging.getLogger("mmtools")


def _pairs(tagger: TrainedTagger, examples: Sequence[Example], on_problem: ProblemHandler,
           skipped: list[int]) -> Iterator[tuple[Example, Sample]]:
    spec = tagger.spec
    for example in examples:
        text = example_text(example)  # a labelled example without a text or a photo has none: it says so
        given = RecordInput(text=text, image=example.image, no_text=text is None, no_image=example.image is None)
        reason = missing_modality(spec, given, ("text",), "path")
        if reason is not None:
            skipped[0] += 1
            on_problem(Problem(example.where, f"{reason}; not evaluated with {tagger.name}"))
            continue
        yield example, Sample(example.id, text=given.text if spec.uses_text else None,
                              image=given.image if spec.uses_image else None)


def _read_as(pairs: Sequence[tuple[Example, Sample]], mode: str) -> list[tuple[Example, Sample]]:
    """The examples that have what ``mode`` reads, as fresh samples that hold only that (``predict``
    prepares samples in place, so each reading gets its own)."""
    text, image = mode in (MULTIMODAL, TEXT_ONLY), mode in (MULTIMODAL, IMAGE_ONLY)
    return [(example, Sample(sample.id, text=sample.text if text else None, image=sample.image if image else None))
            for example, sample in pairs
            if (sample.text is not None or not text) and (sample.image is not None or not image)]


def _scored(tagger: TrainedTagger, pairs: Sequence[tuple[Example, Sample]], threshold: float | None,
            batch_size: int, on_problem: ProblemHandler) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags of each readable pair, at the thresholds of the mode it is read in."""
    limits = {mode: [tagger.effective_thresholds(threshold, mode=mode).for_label(label) for label in tagger.labels]
              for mode in MODES}
    gold: list[list[str]] = []
    predicted: list[list[str]] = []
    for example, sample, row in predict(tagger, pairs, batch_size=batch_size, on_problem=on_problem):
        gold.append(example.tags)
        predicted.append([label for label, score, limit in zip(tagger.labels, row, limits[sample_mode(sample)])
                          if score >= limit])
    return gold, predicted


def thresholds_used(tagger: TrainedTagger, threshold: float | None, data_path: str | None = None
                    ) -> dict[str, Any]:
    """What the thresholds of an evaluation are and where they were tuned. Nothing is tuned on the data
    being evaluated; ``tuned_on_this_data`` says when the model's thresholds were tuned on (part of) it, as
    when a tagger is evaluated on its own validation file, which flatters it."""
    if threshold is not None:
        return {"thresholds": f"{threshold} for every label", "tuned_on": None, "tuned_on_this_data": False}
    tuned = tagger.training.get("thresholds_tuned_on")
    if not isinstance(tuned, dict):  # no validation data in training (or a tagger older than this record)
        tuned_any = any(abs(t - 0.5) > 1e-9 for t in tagger.thresholds.values())
        return {"thresholds": "the model's per-label thresholds" if tuned_any else "0.5 for every label",
                "tuned_on": tuned if isinstance(tuned, str) else None, "tuned_on_this_data": False}
    here = os.path.realpath(data_path) if data_path else None
    same = here is not None and here in (tuned.get("path"), tuned.get("held_out_of"))
    return {"thresholds": "the model's per-label thresholds", "tuned_on": tuned, "tuned_on_this_data": same}


def evaluate_tagger(tagger: TrainedTagger, examples: Sequence[Example], *, threshold: float | None = None,
                    batch_size: int = 32, on_problem: ProblemHandler = raise_problem,
                    data_path: str | None = None) -> dict[str, Any]:
    """The tagger's report on ``examples`` (whose tags are normalised): micro, macro and per-label P/R/F1.

    Gold labels the model does not know are kept (they can only be missed, which is the truth of it) and
    listed under ``unknown_labels``; examples the model cannot read (wrong modality) are left out and
    counted under ``skipped``. The thresholds are the model's (tuned in training) or ``threshold``; nothing is
    tuned on ``examples``, and the report says which thresholds it used (``thresholds_used``), warning when
    the model's were tuned on ``data_path`` itself.
    """
    used = thresholds_used(tagger, threshold, data_path)
    if used["tuned_on_this_data"]:
        log.warning("%s: its thresholds were tuned on %s (its validation data in training), so these figures "
                    "flatter it; evaluate on data it has not seen, or give --threshold", tagger.name, data_path)
    if tagger.spec.modality == "image":  # one picture on several rows (one per caption) is one example
        examples = group_by_image(examples)
    skipped = [0]
    pairs = list(_pairs(tagger, examples, on_problem, skipped))
    # Each example read with what it has; a two-tower tagger that can do without one is also read with each
    # modality alone, so that the cost of a missing photo (or description) shows beside the full figures.
    given = [(example, Sample(sample.id, sample.text, sample.image)) for example, sample in pairs]
    gold, predicted = _scored(tagger, given, threshold, batch_size, on_problem)
    modes: dict[str, Any] = {}
    if tagger.spec.modality == "both" and tagger.spec.allows_one_modality:
        for mode in MODES:
            report = tagging_report(*_scored(tagger, _read_as(pairs, mode), threshold, batch_size, on_problem))
            modes[mode] = {"examples": report["examples"], "micro": report["micro"], "macro": report["macro"]}
    known = set(tagger.labels)
    unknown = sorted({tag for tags in gold for tag in tags} - known)
    if unknown:
        log.warning("%s: %d label(s) of the test data are not in its vocabulary and count as missed: %s",
                    tagger.name, len(unknown), ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
    report = tagging_report(gold, predicted)
    return {"model": tagger.name, "reads": describe_modalities(tagger.spec), **report,
            **({"modes": modes} if modes else {}), "skipped": skipped[0], "unknown_labels": unknown, **used}
