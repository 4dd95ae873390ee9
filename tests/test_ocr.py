"""mmtools ocr: Vietnamese signs drawn on real photos are read back; bad inputs are named and skipped."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmtools.ocr.signs import SIGN_TEXTS, character_error_rate, on_sign, place_sign

PHOTOS = Path(__file__).resolve().parent / "data" / "vi-photos" / "images"  # the repository's own photos
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and subprocess.run(["sh", "-c", "tesseract --list-langs 2>&1 | grep -qx vie"]).returncode,
    reason="Tesseract with Vietnamese data is not installed (CI installs it: scripts/install-system.sh ocr)")


@pytest.fixture(scope="module")
def signs(tmp_path_factory) -> tuple[Path, dict[str, str], dict[str, list[int]]]:
    """20 real photos with a Vietnamese sign each (held out from the photos the engine was tuned on)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("signs")
    rng = random.Random(7)
    photos = sorted(PHOTOS.glob("*.jpg"))[8:28]  # the full set's photos 100-119 (tests/data/vi-photos/ATTRIBUTION.md)
    assert len(photos) == 20, f"the OCR test's photos are missing from {PHOTOS}"
    truth, boards = {}, {}
    for i, photo in enumerate(photos):
        text = SIGN_TEXTS[(i * 5) % len(SIGN_TEXTS)]
        target = folder / f"sign{i:02d}.jpg"
        drawn, boards[target.name] = place_sign(Image.open(photo), text, rng)
        drawn.save(target, quality=92)
        truth[target.name] = text
    return folder, truth, boards


def run(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mmtools"), *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_signs_on_photos_are_read_with_a_low_character_error_rate(signs, tmp_path):
    folder, truth, boards = signs
    (folder / "broken.jpg").write_text("not an image")
    try:
        done = run(["ocr", str(folder), "--boxes"], tmp_path)
    finally:
        (folder / "broken.jpg").unlink()
    assert done.returncode == 1, done.stderr  # one input skipped
    assert "broken.jpg" in done.stderr and done.stderr.count("\n") == 1
    records = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 20
    names = [Path(r["path"]).name for r in records]
    signs = [character_error_rate(truth[n], on_sign(r["ocr_lines"], boards[n])) for n, r in zip(names, records)]
    assert sum(signs) / len(signs) <= 0.06, signs  # measured 0.021 on these held-out photos (0.078 before)
    # The photos' own text is read too (an airline's name, a copyright line), and little texture taken for text:
    off_board = [line["text"] for n, r in zip(names, records) for line in r["ocr_lines"]
                 if not on_sign([line], boards[n])]
    # measured 14 lines in the 20 photos, nearly all the photos' own print (FIELD, LEXUS, NIMITZ, METS.COM, a web
    # address), read since PP-OCRv4's recogniser reads the letters (4 lines, 2 of them real, with Tesseract alone)
    assert len(off_board) <= 16, off_board
    lines = [line for r in records for line in r["ocr_lines"]]
    assert lines and all(len(line["box"]) == 4 and 0 <= line["confidence"] <= 100 for line in lines)


def test_records_pass_through_and_feed_embed_images(signs, tmp_path):
    folder, truth, _ = signs
    name = sorted(truth)[0]
    records = orjson.dumps({"path": str(folder / name), "caption": "biển hiệu"}).decode() + "\n"
    done = run(["ocr", "-", "--jobs", "1"], tmp_path, stdin=records)
    assert done.returncode == 0, done.stderr
    (record,) = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert record["caption"] == "biển hiệu" and record["id"] == str(folder / name)
    assert character_error_rate(truth[name], record["ocr_text"]) <= 0.2


def test_missing_language_data_is_one_clear_error(tmp_path):
    done = run(["ocr", "--lang", "xyz", str(tmp_path)], tmp_path)
    assert done.returncode == 3
    assert "Tesseract has no data for xyz" in done.stderr and "Traceback" not in done.stderr


def test_character_error_rate():
    assert character_error_rate("Phở bò", "Phở  bò") == 0
    assert character_error_rate("abcd", "abxd") == 0.25
    assert character_error_rate("ab", "") == 1.0


def test_only_lines_centred_on_the_board_count_as_the_sign():
    lines = [{"text": "Phở bò", "box": [10, 10, 80, 20]}, {"text": "SALE", "box": [200, 5, 40, 20]}]
    assert on_sign(lines, [0, 0, 100, 40]) == "Phở bò"
