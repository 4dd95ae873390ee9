"""The scene engine of mmtools ocr: a text detector finds lines, each is straightened and read by Tesseract.
Photos are generated here (busy backgrounds with Vietnamese phrases drawn small, outlined, in perspective,
blurred and JPEG-damaged: mmtools.ocr.scenes), so nothing outside the repository is needed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from mmtools.ocr.engine import OcrLine, OcrResult
from mmtools.ocr.scenes import SCENE_TEXTS, accented_words, best_stretch, draw_scene, stretch_error

BIN = Path(sys.executable).parent
HAVE_VIE = not subprocess.run(["sh", "-c", "tesseract --list-langs 2>&1 | grep -qx vie"]).returncode
needs_tesseract = pytest.mark.skipif(not os.environ.get("CI") and not HAVE_VIE,
                                     reason="Tesseract with Vietnamese data is not installed "
                                            "(scripts/install-system.sh ocr)")
needs_detector = pytest.mark.skipif(
    not os.environ.get("CI") and subprocess.run([sys.executable, "-c", "import rapidocr_onnxruntime.ch_ppocr_det, "
                                                 "tesserocr"], capture_output=True).returncode != 0,
    reason="the text detector or tesserocr is not installed (pip install 'mmtools[ocr]')")


def background(rng: random.Random, size: tuple[int, int] = (560, 400)):
    """A busy made-up photo: a colour gradient, blotches of colour, and noise."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    a, b = np.array([rng.randint(0, 255) for _ in range(3)]), np.array([rng.randint(0, 255) for _ in range(3)])
    ramp = np.linspace(0, 1, width)[None, :, None]
    pixels = (a * (1 - ramp) + b * ramp).repeat(height, axis=0)
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = rng.randint(-40, width), rng.randint(-40, height)
        box = (x, y, x + rng.randint(20, 160), y + rng.randint(20, 120))
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noise = np.random.default_rng(rng.randint(0, 1000)).normal(0, 12, (height, width, 3))
    image = Image.fromarray(np.clip(np.asarray(image.filter(ImageFilter.GaussianBlur(2))) + noise, 0, 255)
                            .astype(np.uint8))
    return image


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """Eight generated photos with two or three Vietnamese phrases each."""
    folder = tmp_path_factory.mktemp("scenes")
    rng = random.Random(29)
    truth = {}
    for i in range(8):
        image, drawn = draw_scene(background(rng), rng.sample(SCENE_TEXTS, rng.randint(2, 3)), rng)
        image.save(folder / f"scene{i}.png")
        truth[f"scene{i}.png"] = [line.text for line in drawn]
    return folder, truth


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mmtools"), *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@needs_tesseract
@needs_detector
@pytest.mark.slow
def test_scene_text_is_found_and_read_with_its_accents(scenes, tmp_path):
    folder, truth = scenes
    done = run(["ocr", str(folder), "--boxes", "--jobs", "2"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # the detector is there: no fallback warning
    records = {Path(r["path"]).name: r for r in map(orjson.loads, done.stdout.splitlines())}
    assert sorted(records) == sorted(truth)
    errors, exact, accented = [], 0, 0
    for name, lines in truth.items():
        for line in lines:
            errors.append(min(1.0, stretch_error(line, records[name]["ocr_text"])))
            e, n = accented_words(line, records[name]["ocr_text"])
            exact, accented = exact + e, accented + n
    assert sum(errors) / len(errors) <= 0.12, errors  # measured 0.04 (0.20 with Tesseract reading the letters)
    assert exact / accented >= 0.75, (exact, accented)  # measured 0.90 (0.68 with Tesseract reading the letters)
    for record in records.values():
        assert record["ocr_text"] == "\n".join(line["text"] for line in record["ocr_lines"])
        for line in record["ocr_lines"]:
            left, top, width, height = line["box"]
            assert 0 <= left and 0 <= top and width > height > 0 and 0 <= line["confidence"] <= 100


@needs_tesseract
@needs_detector
def test_one_job_and_two_read_the_same_and_keep_the_order(scenes, tmp_path):
    folder, truth = scenes
    names = sorted(truth)[:3]
    listing = "".join(orjson.dumps({"path": str(folder / n), "n": i}).decode() + "\n" for i, n in enumerate(names))
    (tmp_path / "in.jsonl").write_text(listing)
    one = run(["ocr", str(tmp_path / "in.jsonl"), "--jobs", "1"], tmp_path)
    two = run(["ocr", str(tmp_path / "in.jsonl"), "--jobs", "2"], tmp_path)
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout
    assert [orjson.loads(line)["n"] for line in one.stdout.splitlines()] == [0, 1, 2]


@needs_tesseract
def test_a_missing_detector_falls_back_to_tesseract_alone_with_one_warning(tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    fake = tmp_path / "fake" / "rapidocr_onnxruntime"  # an install without the model file
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    sign = Image.new("RGB", (260, 60), "white")
    ImageDraw.Draw(sign).text((10, 10), "Phở bò", font=ImageFont.truetype(
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 32), fill="black")
    sign.save(tmp_path / "sign.png")
    done = run(["ocr", "sign.png", "sign.png"], tmp_path, env={"PYTHONPATH": str(tmp_path / "fake")})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and "detector" in done.stderr and "mmtools[ocr]" in done.stderr
    assert "Traceback" not in done.stderr
    assert [orjson.loads(line)["ocr_text"] for line in done.stdout.splitlines()] == ["Phở bò", "Phở bò"]


@needs_detector
def test_detection_is_batched_and_finds_each_drawn_line():
    import cv2
    import numpy as np

    from mmtools.ocr.detect import DbnetDetector

    rng = random.Random(5)
    photos = [draw_scene(background(rng, size), ["Phở bò tái chín", "Cấm đỗ xe"], rng, quality=90)
              for size in ((560, 400), (400, 560))]
    found = DbnetDetector().detect([np.asarray(image) for image, _ in photos])
    assert len(found) == 2
    for (image, drawn), quads in zip(photos, found):
        for line in drawn:
            centre = np.mean(line.quad, axis=0)
            assert any(cv2.pointPolygonTest(q.reshape(-1, 1, 2), (float(centre[0]), float(centre[1])), False) >= 0
                       for q in quads), line.text
        for quad in quads:  # clockwise from the top left
            assert quad.shape == (4, 2) and quad[0][0] < quad[1][0] and quad[1][1] < quad[2][1]
    assert DbnetDetector().session is DbnetDetector().session  # one ONNX session per process


@needs_tesseract
@needs_detector
def test_a_line_in_perspective_is_warped_flat_and_read():
    from PIL import Image, ImageDraw, ImageFont

    import numpy as np

    from mmtools.ocr.recognise import TesseractLineRecogniser
    from mmtools.ocr.scene import rectify

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 40)
    flat = Image.new("RGB", (420, 60), "white")
    ImageDraw.Draw(flat).text((10, 5), "Bánh mì thịt nướng", font=font, fill="black")
    corners = np.float32([[60, 40], [480, 80], [480, 150], [60, 110]])  # sloping down, the far end larger
    line = rectify(_project(flat, corners), corners)
    assert line.width > 4 * line.height
    assert TesseractLineRecogniser().recognise(line).text == "Bánh mì thịt nướng"


def _project(flat, corners):
    """``flat`` drawn on a white 560x200 picture with its corners at ``corners``."""
    from PIL import Image

    from mmtools.ocr.scene import perspective_coefficients

    source = [(0, 0), (flat.width, 0), (flat.width, flat.height), (0, flat.height)]
    return flat.transform((560, 200), Image.PERSPECTIVE, perspective_coefficients([tuple(c) for c in corners], source),
                          Image.BICUBIC, fillcolor="white")


def test_lines_come_in_reading_order():
    from mmtools.ocr.scene import reading_order

    lines = [OcrLine("c", [300, 100, 80, 20], 90), OcrLine("a", [10, 12, 80, 20], 90),
             OcrLine("b", [200, 8, 80, 22], 90), OcrLine("d", [20, 104, 80, 20], 90)]
    assert [line.text for line in reading_order(lines)] == ["a", "b", "d", "c"]
    assert OcrResult(reading_order(lines)).text == "a\nb\nd\nc"


def test_misread_syllables_are_put_back_and_other_words_left_alone():
    from mmtools.ocr.lexicon import correct_line, correct_word, syllable_counts

    if not syllable_counts():
        pytest.skip("underthesea's lexicon is not installed")
    assert correct_line("vận độmg viên") == "vận động viên"  # one letter wrong
    assert correct_line("Nhà sách Phươngg,,") == "Nhà sách Phương"  # one letter too many, stray marks
    assert correct_word("Lâý") == "Lấy"  # the tone mark on the wrong vowel
    assert correct_line("UNITED Airlines 25.000đ 50%") == "UNITED Airlines 25.000đ 50%"
    assert correct_line("Cà phê sữa đá") == "Cà phê sữa đá"
    assert correct_line("(' ,)") == ""


def test_each_drawn_line_is_scored_against_the_stretch_that_matches_it_best():
    assert best_stretch("Phở bò", "SALE\nxPhở bòn 50%") == (0, "xPhở bòn")
    assert stretch_error("Cấm đỗ xe", "Cấm đỗ xe\nPOLO") == 0
    assert stretch_error("Cấm đỗ xe", "") == 1
    assert stretch_error("Cấm đỗ xe", "Cam do xe") == pytest.approx(3 / 9)
    assert accented_words("Phở bò tái chín", "Phở bò tai chín") == (3, 4)


def test_scenes_are_drawn_where_they_say():
    rng = random.Random(1)
    image, drawn = draw_scene(background(rng), ["Phở bò tái chín", "Cấm đỗ xe", "Chè khúc bạch"], rng)
    assert image.mode == "RGB" and image.size == (560, 400) and 1 <= len(drawn) <= 3
    for line in drawn:
        xs, ys = [x for x, _ in line.quad], [y for _, y in line.quad]
        assert 0 <= min(xs) < max(xs) <= 560 and 0 <= min(ys) < max(ys) <= 400


def test_a_batch_the_detector_fails_on_is_named_and_the_rest_read_in_order(tmp_path):
    from PIL import Image

    from mmtools.errors import Problem
    from mmtools.images import ImageSource
    from mmtools.ocr.pipeline import ocr_records

    class Engine:  # locates by image width; fails on any batch holding a 13-pixel-wide image
        def locate(self, images):
            if any(image.width == 13 for image in images):
                raise RuntimeError("bad input")
            return [image.width for image in images]

        def recognise(self, image, located):
            return OcrResult([OcrLine(f"w{located}", [0, 0, located, 1], 90.0)])

    sources = []
    for i, width in enumerate([10, 11, 12, 13, 14, 15]):
        Image.new("RGB", (width, 8)).save(tmp_path / f"{i}.png")
        sources.append(ImageSource(id=str(i), path=str(tmp_path / f"{i}.png"), record={}))
    (tmp_path / "broken.png").write_text("not an image")
    sources.insert(1, ImageSource(id="x", path=str(tmp_path / "broken.png"), record={}))
    problems: list[Problem] = []
    records = list(ocr_records(sources, Engine(), jobs=2, batch=3, on_problem=problems.append))
    # batches: [10, broken, 11], [12, 13, 14] (fails), [15]
    assert [r["ocr_text"] for r in records] == ["w10", "w11", "w15"]
    assert [Path(p.source).name for p in problems] == ["broken.png", "2.png", "3.png", "4.png"]
    assert "text detection failed (bad input)" in problems[1].reason
