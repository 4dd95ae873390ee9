"""Scene text on real photos, the hard way: Vietnamese phrases drawn small (letters 16-40 px) in eight DejaVu faces,
on boards or straight on the photo with an outline, in perspective and turned, several per photo, then blurred
and saved as JPEG at quality 60-80 (mmtools.ocr.scenes). Scored per drawn line against the best-matching stretch
of what was read: character error rate, and the share of accented words read exactly. Engines, same photos, same
run: mmtools ocr (detector; each line's letters read by PP-OCRv4's recogniser, its accents by Tesseract, the two
joined into Vietnamese syllables with the accent restorer's language model), its page engine (Tesseract alone, today's fallback), plain
Tesseract vie in sparse-text mode, and RapidOCR (the same detector + PP-OCRv4's Chinese/English recogniser, what
immich ships).

    python benchmarks/ocr_scenes.py --photos 40 --offset 300 [--jobs 2] [--engines scene,plain,rapid,page] [--show]

Photos 0-39 were used to tune the engine; report on others. Half the drawn lines are sign texts, half phrases
of the photos' captions; the accent restorer's hand-written photo phrases (mmtools/text/data) hold some of those
phrases' word sequences ("người đàn ông đang"), so the CER of each half is printed too.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import orjson  # noqa: E402
from PIL import Image  # noqa: E402

from mmtools.images import ImageSource  # noqa: E402
from mmtools.ocr.pipeline import ocr_records, open_engine  # noqa: E402
from mmtools.ocr.scenes import SCENE_TEXTS, accented_words, draw_scene, stretch_error  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "vi-photos"


def caption_phrases() -> list[str]:
    """Three to five consecutive words of the photos' Vietnamese captions: phrases with many accents."""
    phrases = []
    for line in (DATA / "captions.jsonl").read_bytes().splitlines():
        words = [w for w in orjson.loads(line)["captions"][0].split() if any(c.isalpha() for c in w)]
        if len(words) >= 5:
            phrases.append(" ".join(words[1:5]))
    return phrases


def make(photos: list[Path], out: Path, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    pool = caption_phrases()
    truth = {}
    for i, photo in enumerate(photos):
        texts = [rng.choice(SCENE_TEXTS) if rng.random() < 0.6 else rng.choice(pool) for _ in range(rng.randint(2, 4))]
        image, drawn = draw_scene(Image.open(photo), texts, rng)
        target = out / f"scene{i:03d}.png"  # the JPEG damage is already in the pixels: kept losslessly
        image.save(target)
        truth[str(target)] = [line.text for line in drawn]
    return truth


def score(truth: dict[str, list[str]], readings: dict[str, str]) -> tuple[float, int, int, list[float]]:
    errors, exact, accented = [], 0, 0
    for path, lines in truth.items():
        for line in lines:
            errors.append(min(1.0, stretch_error(line, readings.get(path, ""))))
            e, n = accented_words(line, readings.get(path, ""))
            exact, accented = exact + e, accented + n
    return sum(errors) / len(errors), exact, accented, errors


def run_mmtools(truth: dict[str, list[str]], jobs: int | None, engine) -> dict[str, str]:
    sources = [ImageSource(id=path, path=path, record={"path": path}) for path in truth]
    return {r["path"]: r["ocr_text"] for r in ocr_records(sources, engine, jobs=jobs)}


def run_plain(truth: dict[str, list[str]]) -> dict[str, str]:
    import pytesseract

    return {path: pytesseract.image_to_string(Image.open(path), lang="vie", config="--psm 11") for path in truth}


def run_rapid(truth: dict[str, list[str]]) -> dict[str, str]:
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    readings = {}
    for path in truth:
        result, _ = engine(path)
        readings[path] = "\n".join(text for _, text, _ in result or [])
    return readings


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of the programs it ran: on a machine shared with other
    work, wall-clock speed says more about the others than about the engine."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--offset", type=int, default=300, help="first photo used (the engine was tuned on 0-39)")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--out", default="/tmp/mmtools-ocr-scenes")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--engines", default="scene,plain,rapid,page")
    parser.add_argument("--show", action="store_true", help="print truth and reading of each line not read exactly")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = sorted((DATA / "images").glob("*.jpg"))[args.offset:args.offset + args.photos]
    truth = make(photos, out, args.seed + args.offset)
    lines = sum(len(v) for v in truth.values())
    print(f"{len(truth)} photos ({args.offset}-{args.offset + len(truth) - 1}), {lines} drawn lines, "
          f"{os.cpu_count()} cores (shared with other work: speeds are indicative)")
    engines = {
        "scene": ("mmtools ocr (DBNet + PP-OCRv4 letters + Tesseract vie accents)",
                  lambda: run_mmtools(truth, args.jobs, open_engine("vie", on_warning=print))),
        "page": ("mmtools page engine (Tesseract alone, the fallback)",
                 lambda: run_mmtools(truth, args.jobs, __import__("mmtools.ocr.engine").ocr.engine.TesseractEngine())),
        "plain": ("plain Tesseract vie (sparse text, 1 job)", lambda: run_plain(truth)),
        "rapid": ("RapidOCR: DBNet + PP-OCRv4 Chinese recogniser (immich's, 1 job)", lambda: run_rapid(truth)),
    }
    for key in args.engines.split(","):
        name, run = engines[key]
        start, cpu = time.perf_counter(), _cpu_seconds()
        readings = run()
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        cer, exact, accented, errors = score(truth, readings)
        print(f"{name:66s} CER per line {cer:.3f}, accented words exact {exact}/{accented} "
              f"({exact / max(1, accented):.0%}), lines exact {sum(e == 0 for e in errors)}/{lines}, "
              f"{len(truth) / seconds:.2f} photos/s, {cpu / len(truth):.2f} CPU s/photo")
        signs = [e for e, text in zip(errors, (t for texts in truth.values() for t in texts)) if text in SCENE_TEXTS]
        others = [e for e, text in zip(errors, (t for texts in truth.values() for t in texts))
                  if text not in SCENE_TEXTS]
        print(f"{'':66s} CER on sign texts {sum(signs) / max(1, len(signs)):.3f} ({len(signs)} lines), "
              f"on caption phrases {sum(others) / max(1, len(others)):.3f} ({len(others)} lines)")
        if args.show:
            for path, texts in truth.items():
                for text in texts:
                    if stretch_error(text, readings.get(path, "")):
                        print(f"   {Path(path).name} {text!r} <- {readings.get(path, '')!r}")


if __name__ == "__main__":
    main()
