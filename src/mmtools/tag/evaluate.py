"""`eval tagging`: precision, recall and F1 of taggers on labelled examples, several models side by side."""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.tag.batches import Sample
from mmtools.tag.data import example_text
from mmtools.tag.metrics import tagging_report
from mmtools.tag.trained import (RecordInput, TrainedTagger, describe_modalities, missing_modality, predict)
from mmtools.train.data import Example, group_by_image

log = logging.getLogger("mmtools")


def _pairs(tagger: TrainedTagger, examples: Sequence[Example], on_problem: ProblemHandler,
           skipped: list[int]) -> Iterator[tuple[Example, Sample]]:
    spec = tagger.spec
    for example in examples:
        given = RecordInput(text=example_text(example), image=example.image, no_text=False, no_image=False)
        reason = missing_modality(spec, given, ("text",), "path")
        if reason is not None:
            skipped[0] += 1
            on_problem(Problem(example.where, f"{reason}; not evaluated with {tagger.name}"))
            continue
        yield example, Sample(example.id, text=given.text if spec.uses_text else None,
                              image=given.image if spec.uses_image else None)


def evaluate_tagger(tagger: TrainedTagger, examples: Sequence[Example], *, threshold: float | None = None,
                    batch_size: int = 32, on_problem: ProblemHandler = raise_problem) -> dict[str, Any]:
    """The tagger's report on ``examples`` (whose tags are normalised): micro, macro and per-label P/R/F1.

    Gold labels the model does not know are kept (they can only be missed, which is the truth of it) and
    listed under ``unknown_labels``; examples the model cannot read (wrong modality) are left out and
    counted under ``skipped``.
    """
    thresholds = tagger.effective_thresholds(threshold)
    if tagger.spec.modality == "image":  # one picture on several rows (one per caption) is one example
        examples = group_by_image(examples)
    skipped = [0]
    gold: list[list[str]] = []
    predicted: list[list[str]] = []
    limits = [thresholds.for_label(label) for label in tagger.labels]
    for example, row in predict(tagger, _pairs(tagger, examples, on_problem, skipped), batch_size=batch_size,
                                on_problem=on_problem):
        gold.append(example.tags)
        predicted.append([label for label, score, limit in zip(tagger.labels, row, limits) if score >= limit])
    known = set(tagger.labels)
    unknown = sorted({tag for tags in gold for tag in tags} - known)
    if unknown:
        log.warning("%s: %d label(s) of the test data are not in its vocabulary and count as missed: %s",
                    tagger.name, len(unknown), ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else ""))
    report = tagging_report(gold, predicted)
    return {"model": tagger.name, "reads": describe_modalities(tagger.spec), **report,
            "skipped": skipped[0], "unknown_labels": unknown}
