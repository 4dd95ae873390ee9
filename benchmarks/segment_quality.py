"""Word-segmentation quality (word precision / recall / F1) and speed on UD Vietnamese-VTB.

    PYTHONPATH=src python benchmarks/segment_quality.py [CONLLU] [--limit N] [--backends underthesea,pyvi]

The raw sentence is the FORMs joined by spaces; a predicted word counts when its syllable span matches a gold
word exactly (punctuation tokens count as words, as in the gold). For each back end that can run here it
prints:

- "direct": a plain loop calling the back end itself (underthesea.word_tokenize...), the baseline;
- "segment": ``Segmenter.segment`` in a loop (normalisation, alignment, dictionary on top);
- "many j=1" / "many j=2": ``Segmenter.segment_many`` (speed only, same output as "segment");
- variants of what is handed to the back end (tone-mark style), to see whether normalisation helps.
"""

from __future__ import annotations

import argparse
import os
import time
import unicodedata
from pathlib import Path

from mmtools.errors import MmtoolsError
from mmtools.text import get_segmenter, normalize_text
from mmtools.text.alignment import gap_joins
from mmtools.text.segment import BACKENDS

DEFAULT_CONLLU = Path(__file__).resolve().parent.parent / "../shared/data/ud-vtb/vi_vtb-ud-dev.conllu"


def read_conllu(path: Path) -> list[list[str]]:
    """Sentences as lists of FORMs (multi-syllable FORMs keep their spaces)."""
    sentences, forms = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if forms:
                sentences.append(forms)
            forms = []
        elif not line.startswith("#"):
            columns = line.split("\t")
            if columns[0].isdigit():  # skip multi-word ranges "1-2" and empty nodes "1.1"
                forms.append(unicodedata.normalize("NFC", columns[1]))
    if forms:
        sentences.append(forms)
    return sentences


def gold_joins(forms: list[str]) -> list[bool]:
    """For each gap between the raw sentence's syllables: inside a gold word?"""
    joins = []
    for index, form in enumerate(forms):
        if index:
            joins.append(False)
        joins.extend([True] * (len(form.split(" ")) - 1))
    return joins


def joins_from_output(raw: str, output: str) -> list[bool] | None:
    """Read the join decisions off our output, gap by gap of ``raw`` (None if the texts do not line up).

    Normalisation only re-accents (same length) and removes spaces before punctuation ("nói :" -> "nói:");
    a removed space is a word boundary, as every tokeniser splits punctuation off. Segment puts spaces around
    punctuation that the raw text may lack; those are skipped.
    """
    joins = []
    j = 0
    for char in raw:
        if char == " ":
            if j < len(output) and output[j] in " _":
                joins.append(output[j] == "_")
                j += 1
            else:
                joins.append(False)
        else:
            if j < len(output) and output[j] == " ":  # a space segment put around punctuation ("hòa .")
                j += 1
            j += 1
    return joins if j == len(output) else None


def spans(joins: list[bool]) -> set[tuple[int, int]]:
    words, start = set(), 0
    for gap, joined in enumerate(joins):
        if not joined:
            words.add((start, gap + 1))
            start = gap + 1
    words.add((start, len(joins) + 1))
    return words


class Score:
    def __init__(self):
        self.correct = self.predicted = self.gold = self.unaligned = 0

    def add(self, gold: list[bool], predicted: list[bool] | None) -> None:
        gold_words = spans(gold)
        self.gold += len(gold_words)
        if predicted is None:
            self.unaligned += 1
            return
        predicted_words = spans(predicted)
        self.predicted += len(predicted_words)
        self.correct += len(gold_words & predicted_words)

    def __str__(self) -> str:
        precision = self.correct / self.predicted if self.predicted else 0.0
        recall = self.correct / self.gold if self.gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        text = f"P {100 * precision:5.2f}  R {100 * recall:5.2f}  F1 {100 * f1:5.2f}"
        return text + (f"  ({self.unaligned} sentences not aligned)" if self.unaligned else "")


REPEAT = 3


def timed(function):
    """Result and best time of ``REPEAT`` runs (the best is the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return result, best


def report(label: str, count: int, seconds: float, score: Score | None = None) -> None:
    print(f"  {label:<38} {count / seconds:8.0f} sentences/s   {score if score else ''}")


def direct_words(backend: str):
    """The back end's own function, for the baseline loop."""
    if backend == "underthesea":
        from underthesea import word_tokenize

        return word_tokenize
    if backend == "pyvi":
        from pyvi import ViTokenizer

        return lambda text: ViTokenizer.tokenize(text).split()
    segmenter = get_segmenter(backend)  # vncorenlp: reuse the checked, loaded model
    return segmenter._backend_words


def benchmark_backend(backend: str, sentences: list[list[str]], raws: list[str], jobs: int) -> None:
    try:
        segmenter = get_segmenter(backend)
    except MmtoolsError as error:
        print(f"{backend}: skipped ({error.message})")
        return
    print(f"{backend}:")
    golds = [gold_joins(forms) for forms in sentences]

    words = direct_words(backend)
    words(raws[0])  # load the model outside the timings
    outputs, seconds = timed(lambda: [words(raw) for raw in raws])
    score = Score()
    for raw, gold, output in zip(raws, golds, outputs):
        score.add(gold, gap_joins(raw.split(" "), output))
    report("direct (baseline)", len(raws), seconds, score)

    default_style = type(segmenter).backend_tone_style
    for style in dict.fromkeys((default_style, None, "old", "new")):
        segmenter.backend_tone_style = style
        outputs, seconds = timed(lambda: [segmenter.segment(raw) for raw in raws])
        score = Score()
        for raw, gold, output in zip(raws, golds, outputs):
            score.add(gold, joins_from_output(raw, output))
        label = "segment" if style is None else f"segment, back end sees {style!r}"
        label += " (default)" if style == default_style else ""
        report(label, len(raws), seconds, score)
    segmenter.backend_tone_style = default_style

    # The cost of our layer alone (normalisation, alignment, dictionary): the back end answers from a cache.
    answers = {}
    backend_words = segmenter._backend_words
    segmenter._backend_words = lambda text: answers.get(text) or answers.setdefault(text, backend_words(text))
    [segmenter.segment(raw) for raw in raws]
    _, seconds = timed(lambda: [segmenter.segment(raw) for raw in raws])
    print(f"  {'mmtools layer alone':<38} {len(raws) / seconds:8.0f} sentences/s   "
          f"({1e6 * seconds / len(raws):.0f} µs per sentence on top of the back end)")
    del segmenter._backend_words

    reference = [segmenter.segment(raw) for raw in raws]
    for jobs_now in sorted({1, jobs}):
        outputs, seconds = timed(lambda: segmenter.segment_many(raws, jobs=jobs_now))
        same = "same output" if outputs == reference else "OUTPUT DIFFERS"
        report(f"segment_many(jobs={jobs_now})", len(raws), seconds)
        print(f"  {'':<38} {same}")


def main() -> None:
    global REPEAT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("conllu", nargs="?", type=Path, default=DEFAULT_CONLLU.resolve())
    parser.add_argument("--limit", type=int, default=0, help="use only the first N sentences")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=REPEAT, help="time each run N times, keep the best")
    args = parser.parse_args()
    REPEAT = args.repeat

    sentences = read_conllu(args.conllu)
    if args.limit:
        sentences = sentences[: args.limit]
    raws = [" ".join(forms) for forms in sentences]
    print(f"{args.conllu.name}: {len(sentences)} sentences, {sum(len(s) for s in sentences)} words")
    # Timings mean little on a busy machine: say how busy it was.
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    start = time.perf_counter()
    for raw in raws:
        normalize_text(raw)
    seconds = time.perf_counter() - start  # first pass: every word is new to the cache
    _, seconds_warm = timed(lambda: [normalize_text(raw) for raw in raws])
    print(f"normalize_text: {len(raws) / seconds:.0f} sentences/s first pass, {len(raws) / seconds_warm:.0f} warm")

    for backend in args.backends.split(","):
        benchmark_backend(backend, sentences, raws, args.jobs)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
