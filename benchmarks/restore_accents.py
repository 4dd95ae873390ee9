"""restore-accents on held-out captions: syllable accuracy with and without an index's texts, beside the
most-frequent-form baseline, all in the same run.

    python benchmarks/restore_accents.py [--learn 500] [--seed 0]

The shared photos' captions (../shared/data/vi-photos/captions.jsonl, 626 photos × 5 captions) are split by
photo: ``--learn`` photos (500) go into a real index (``mmtools index``, random vectors: the restorer reads
only the index's stored texts), and the other photos' captions (126 × 5) are restored from their unaccented
form with ``mmtools.text.restore.load_restorer`` (what ``restore-accents --index`` runs) and without the
index (the general model: wordfreq, underthesea's lexicon and news, the hand-written photo phrases; see
``mmtools.text.accent_corpus``). Accuracy: the share of syllables restored exactly as written
(case-insensitive; tone-mark placement normalised as everywhere in mmtools). The run checks that no held-out
caption is among the texts the general model learns from, and uses a scratch cache and home (your own
``accents/`` texts stay out). It also reports the hand-written everyday photo queries of
``tests/data/photo_queries.vi.txt`` restored exactly, with no index.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from common import REPO, Row, machine, print_table, shared_data

CAPTIONS = shared_data("vi-photos", "captions.jsonl")


def split_photos(learn: int, seed: int) -> tuple[list[dict], list[dict]]:
    records = [orjson.loads(line) for line in CAPTIONS.read_bytes().splitlines() if line.strip()]
    records.sort(key=lambda r: r["id"])
    random.Random(seed).shuffle(records)
    return records[:learn], records[learn:]


def build_index(records: list[dict], where: Path) -> Path:
    """A FAISS index of these photos' records (random vectors), built by the real `mmtools index`."""
    import numpy as np

    from mmtools.records import encode_vector

    rng = np.random.default_rng(0)
    lines = []
    for record in records:
        vector = rng.standard_normal(16).astype("float32")
        lines.append(orjson.dumps({"id": record["id"], "path": record["path"], "captions": record["captions"],
                                   "embedding": encode_vector(vector), "embedding_model": "random-16"}))
    index = where / "learn.faiss"
    subprocess.run([sys.executable, "-m", "mmtools", "-q", "index", "-o", str(index)],
                   input=b"\n".join(lines) + b"\n", check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    return index


def syllable_accuracy(restorer, truths: list[str]) -> float:
    from mmtools.text.accents import fold, syllables
    from mmtools.text.normalize import normalize_text

    right = total = 0
    for truth in truths:
        truth = normalize_text(truth)
        restored = restorer.restore(fold(truth))
        want, got = syllables(truth.lower()), syllables(normalize_text(restored).lower())
        assert len(want) == len(got), (truth, restored)
        right += sum(a == b for a, b in zip(want, got))
        total += len(want)
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learn", type=int, default=500, help="photos whose captions the index holds")
    parser.add_argument("--seed", type=int, default=0, help="which photos are held out")
    args = parser.parse_args()

    scratch = tempfile.TemporaryDirectory(prefix="mmtools-bench-restore-home-")
    os.environ["MMTOOLS_CACHE_DIR"] = os.path.join(scratch.name, "cache")
    os.environ["MMTOOLS_HOME"] = os.path.join(scratch.name, "home")
    from mmtools.text.accent_corpus import PHRASES, phrase_lines, sources
    from mmtools.text.accents import fold
    from mmtools.text.normalize import normalize_text
    from mmtools.text.restore import build_restorer, index_texts, load_restorer

    learn, held_out = split_photos(args.learn, args.seed)
    truths = [caption for record in held_out for caption in record["captions"]]
    learnt = {normalize_text(line, lowercase=True) for line in phrase_lines(PHRASES)}
    leaked = [t for t in truths if normalize_text(t, lowercase=True).rstrip(" .") in learnt]
    assert not leaked, f"held-out captions among the phrases the model learns from: {leaked[:3]}"
    print("general model learns from: " + ", ".join(f"{s.kind} ({s.path.name})" for s in sources()))
    print(f"{machine()}\n{len(learn)} photos indexed, {len(held_out)} held out ({len(truths)} captions)")
    with tempfile.TemporaryDirectory(prefix="mmtools-bench-restore-") as work:
        index = build_index(learn, Path(work))
        started = time.perf_counter()
        with_index = load_restorer(str(index))
        built = time.perf_counter() - started
        general = load_restorer(None)
        texts = index_texts(str(index))
        baselines = {"general": build_restorer(baseline=True),
                     "index": build_restorer(texts, baseline=True)}
        rows = []
        for case, restorer, baseline, goal in (
                ("without --index (general model)", general, baselines["general"], 0.93),
                ("with --index (+ 500 photos' captions)", with_index, baselines["index"], 0.98)):
            started = time.perf_counter()
            accuracy = syllable_accuracy(restorer, truths)
            seconds = time.perf_counter() - started
            plain = syllable_accuracy(baseline, truths)
            rows.append(Row("restore-accents", f"syllable accuracy, {case}", accuracy, plain, "share",
                            target=f"≥ {goal:.2f}", ok=accuracy >= goal))
            print(f"{case}: trigram Viterbi {accuracy:.4f}, most frequent form {plain:.4f} "
                  f"({len(truths) / seconds:,.0f} captions/s)")
        print(f"model with the index's {len(texts)} texts built in {built:.1f} s")
        queries = [line.strip() for line in (REPO / "tests" / "data" / "photo_queries.vi.txt").read_text(
            encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
        exact = sum(general.restore(fold(q)) == q for q in queries) / len(queries)
        plain = sum(baselines["general"].restore(fold(q)) == q for q in queries) / len(queries)
        rows.append(Row("restore-accents", f"everyday photo queries restored exactly, no index ({len(queries)})",
                        exact, plain, "share", target="≥ 0.90", ok=exact >= 0.90))
        print(f"photo queries: {exact:.3f} exactly right (most frequent form {plain:.3f})")
    print_table(rows, "restore-accents: held-out captions of the shared photos "
                      "(baseline: each syllable's most frequent accented form)")


if __name__ == "__main__":
    main()
