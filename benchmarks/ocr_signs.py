"""OCR on real photos with Vietnamese signs drawn on them: character error rate and photos per second,
mmtools' engines (the scene engine: detector, PP-OCRv4 letters and Tesseract accents per line; the page engine: Tesseract's multi-pass reading
alone) against a single plain Tesseract reading (its default page mode) in the same run.

    python benchmarks/ocr_signs.py --photos 40 [--offset 200] [--jobs 2] [--engines scene,page] [--show]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

from PIL import Image, ImageOps  # noqa: E402

from mmtools.images import ImageSource  # noqa: E402
from mmtools.ocr import TesseractEngine, ocr_records, open_engine  # noqa: E402
from mmtools.ocr.signs import SIGN_TEXTS, character_error_rate, on_sign, place_sign  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "vi-photos" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--offset", type=int, default=200, help="first photo used (the engine was tuned on 0-39)")
    parser.add_argument("--out", default="/tmp/mmtools-ocr-bench")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--engines", default="scene,page", help="scene (the default engine), page (Tesseract alone)")
    parser.add_argument("--show", action="store_true", help="print truth and reading of each photo not read exactly")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    truth, boards = {}, {}
    for i, photo in enumerate(sorted(PHOTOS.glob("*.jpg"))[args.offset:args.offset + args.photos]):
        target = out / f"sign{i:03d}.jpg"
        text = SIGN_TEXTS[(i * 7) % len(SIGN_TEXTS)]
        drawn, boards[str(target)] = place_sign(Image.open(photo), text, rng)
        drawn.save(target, quality=92)
        truth[str(target)] = text
    sources = [ImageSource(id=path, path=path, record={"path": path}) for path in truth]

    import pytesseract

    start = time.perf_counter()
    plain = [character_error_rate(truth[path], pytesseract.image_to_string(ImageOps.grayscale(Image.open(path)),
                                                                           lang="vie"))
             for path in truth]
    plain_seconds = time.perf_counter() - start
    print(f"{len(truth)} photos ({args.offset}-{args.offset + len(truth) - 1}), {os.cpu_count()} cores (shared with "
          f"other work: speeds are indicative)")
    print(f"plain tesseract (psm 3, 1 job): CER {sum(plain) / len(plain):.3f}, {len(plain) / plain_seconds:.2f} photos/s")
    engines = {"scene": ("mmtools ocr (detector + PP-OCRv4 letters + Tesseract accents)",
                         lambda: open_engine("vie", on_warning=print)),
               "page": ("mmtools page engine (Tesseract alone)", TesseractEngine)}
    for key in args.engines.split(","):
        name, make = engines[key]
        engine = make()
        start = time.perf_counter()
        records = list(ocr_records(sources, engine, jobs=args.jobs, boxes=True))
        seconds = time.perf_counter() - start
        rates = [character_error_rate(truth[r["path"]], r["ocr_text"]) for r in records]
        signs = [character_error_rate(truth[r["path"]], on_sign(r["ocr_lines"], boards[r["path"]])) for r in records]
        if args.show:
            for record, rate, sign in zip(records, rates, signs):
                if rate:
                    print(f"   {Path(record['path']).name} CER {rate:.2f} (sign {sign:.2f}) "
                          f"truth {truth[record['path']]!r} read {record['ocr_text']!r}")
        print(f"{name} ({args.jobs or 'default'} jobs): CER {sum(rates) / len(rates):.3f}, "
              f"{len(rates) / seconds:.2f} photos/s, exact {sum(r == 0 for r in rates)}/{len(rates)}; "
              f"on the sign alone CER {sum(signs) / len(signs):.3f}, exact {sum(r == 0 for r in signs)}/{len(signs)} "
              f"(the rest is the photos' own text)")


if __name__ == "__main__":
    main()
