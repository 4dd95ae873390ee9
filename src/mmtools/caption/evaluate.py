"""`eval captioning`: captioners (or question answerers) on labelled data, side by side with two baselines.

Captions: BLEU-4 and CIDEr over the test images (each image's captions are its references; every model
writes one caption per image). Questions: exact-match accuracy of the answers (compared in syllables: case,
punctuation and tone-mark placement do not count). Baselines, in the same run: each trained model's untrained
self (OUTPUT/untrained of a `train captioner --arch tiny` run, or the base it was fine-tuned from) and the
most frequent training caption written for every image (for questions: the most frequent training answer to
the same question), both as the model's manifest records them, or computed from ``train_items``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

from mmtools.caption.text import most_frequent, syllable_text
from mmtools.errors import Problem, ProblemHandler, raise_problem
from mmtools.images import ImageDecodeError, load_image

MOST_FREQUENT = "most frequent training caption"
MOST_FREQUENT_ANSWER = "most frequent training answer"


def group_references(items: Iterable[Any]) -> dict[str, list[str]]:
    """Image -> its captions, in first-seen order."""
    references: dict[str, list[str]] = {}
    for item in items:
        references.setdefault(item.image, []).append(item.target)
    return references


def exact_match(gold: Sequence[str], predicted: Sequence[str]) -> float:
    if not gold:
        return 0.0
    return sum(syllable_text(g) == syllable_text(p) for g, p in zip(gold, predicted)) / len(gold)


def answer_priors(items: Iterable[Any]) -> dict[str, str]:
    """Question (in syllables) -> its most frequent answer; "" -> the most frequent answer of all."""
    by_question: dict[str, list[str]] = {}
    for item in items:
        by_question.setdefault(syllable_text(item.prompt or ""), []).append(item.target)
        by_question.setdefault("", []).append(item.target)
    return {question: most_frequent(answers) or "" for question, answers in by_question.items()}


def readable(items: list[Any], on_problem: ProblemHandler = raise_problem) -> list[Any]:
    """The items whose image decodes; each unreadable image reported once."""
    good: dict[str, bool] = {}
    kept = []
    for item in items:
        if item.image not in good:
            try:
                load_image(item.image, draft_size=64)
                good[item.image] = True
            except ImageDecodeError as exc:
                good[item.image] = False
                on_problem(Problem(f"{item.image} ({item.where})", f"{exc}, not evaluated"))
        if good[item.image]:
            kept.append(item)
    return kept


def generate_all(generator: Any, images: list[str], prompts: list[str | None], *, batch_size: int = 16,
                 max_new_tokens: int = 30, num_beams: int = 1, progress: Callable[[int], None] | None = None
                 ) -> list[str]:
    outputs: list[str] = []
    for start in range(0, len(images), batch_size):
        pictures = [load_image(path, draft_size=generator.image_size) for path in images[start:start + batch_size]]
        outputs += generator.generate(pictures, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                                      num_beams=num_beams)
        if progress:
            progress(len(pictures))
    return outputs


def score_texts(items: list[Any], texts: dict[str, str] | list[str]) -> dict[str, Any]:
    """Figures of generated ``texts``: per image (captions, a dict) or per item (answers, a list)."""
    from mmtools.caption.metrics import caption_scores

    if isinstance(texts, list):
        return {"questions": len(items), "accuracy": round(exact_match([i.target for i in items], texts), 4)}
    references = group_references(items)
    scores = caption_scores(references, texts)
    return {"images": len(references), "bleu4": round(scores["bleu4"], 4), "cider": round(scores["cider"], 4)}


def evaluate_generator(generator: Any, items: list[Any], questions: bool, **options: Any) -> dict[str, Any]:
    if questions:
        return score_texts(items, generate_all(generator, [i.image for i in items], [i.prompt for i in items],
                                               **options))
    images = list(group_references(items))
    texts = generate_all(generator, images, [None] * len(images), **options)
    return score_texts(items, dict(zip(images, texts)))


def constant_baseline(items: list[Any], questions: bool, caption: str | None = None,
                      priors: dict[str, str] | None = None) -> dict[str, Any]:
    """The same caption for every image, or each question's most frequent training answer."""
    if questions:
        priors = priors or {}
        answers = [priors.get(syllable_text(i.prompt or ""), priors.get("", "")) for i in items]
        return score_texts(items, answers)
    return score_texts(items, {image: caption or "" for image in group_references(items)})


def untrained_of(generator: Any) -> str | None:
    """Where the model's untrained self is, as its manifest records it (a path relative to the model, or the
    base it was fine-tuned from); None when it does not say."""
    training = (getattr(generator, "manifest", None) or {}).get("training") or {}
    untrained = training.get("untrained") or training.get("base")
    if not untrained:
        return None
    location = os.path.join(generator.location, untrained) if untrained.startswith(".") else untrained
    return os.path.normpath(location) if untrained.startswith(".") else location


def evaluate_captioners(items: list[Any], models: Sequence[str | None], *, load: Callable[[str | None], Any],
                        train_items: list[Any] | None = None, baselines: bool = True,
                        on_problem: ProblemHandler = raise_problem, **options: Any) -> list[dict[str, Any]]:
    """One row per model, each followed by its untrained self; then the most-frequent baseline (once per
    distinct text). ``load(name)`` gives a generator; ``train_items`` override what manifests record."""
    from mmtools.caption.training import is_question_data

    questions = is_question_data(items)
    items = readable(items, on_problem)
    rows: list[dict[str, Any]] = []
    constants: dict[str, Any] = {}
    if train_items:
        constants["data"] = (answer_priors(train_items) if questions
                             else most_frequent(i.target for i in train_items))
    for name in models:
        generator = load(name)
        rows.append({"model": name or generator.name, "baseline": None,
                     **evaluate_generator(generator, items, questions, **options)})
        if not baselines:
            continue
        untrained = untrained_of(generator)
        if untrained is not None:
            rows.append({"model": f"{name or generator.name} (untrained)", "baseline": "untrained",
                         "location": untrained, **evaluate_generator(load(untrained), items, questions, **options)})
        training = (getattr(generator, "manifest", None) or {}).get("training") or {}
        recorded = training.get("answer_priors") if questions else training.get("most_frequent_train_text")
        if recorded and "data" not in constants:
            constants.setdefault(str(recorded), recorded)
    for constant in ([constants["data"]] if "data" in constants else list(constants.values())) if baselines else []:
        if questions:
            rows.append({"model": MOST_FREQUENT_ANSWER, "baseline": "most-frequent",
                         **constant_baseline(items, True, priors=constant)})
        else:
            rows.append({"model": MOST_FREQUENT, "baseline": "most-frequent", "caption": constant,
                         **constant_baseline(items, False, caption=constant)})
    return rows
