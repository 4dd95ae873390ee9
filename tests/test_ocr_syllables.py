"""Letters from one reader, accents from Tesseract, syllables from a language model (mmtools.ocr.syllables), and
the letter reader itself (mmtools.ocr.letters). The language model is a small one counted here, so nothing
outside the repository (or mmtools' cache) is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmtools.ocr.recognise import FusedLineRecogniser, LineReading
from mmtools.ocr.syllables import SyllableDecoder
from mmtools.text.accent_model import NgramModel
from mmtools.text.restore import count_texts

PHRASES = ["giảm tốc độ", "sửa chữa điện lạnh", "cửa hàng sửa chữa", "tốc độ cao", "cà phê sữa đá",
           "giá cả hợp lý", "đường một chiều", "cấm đỗ xe", "giặt ủi lấy liền", "nhà sách phương nam"]


@pytest.fixture(scope="module")
def decoder() -> SyllableDecoder:
    return SyllableDecoder(NgramModel.from_counts(count_texts(PHRASES)))


def test_letters_read_without_spaces_are_cut_into_syllables_and_given_their_accents(decoder):
    assert decoder.decode("Giamtocdo", []) == "Giảm tốc độ"
    assert decoder.decode("Duongmotchieu", []) == "Đường một chiều"
    assert decoder.decode("NhasachPhuongNam", []) == "Nhà sách Phương Nam"


def test_tesseract_words_choose_the_accents_the_language_model_alone_would_not(decoder):
    # the model puts "cà" before "phê"; Tesseract read "cả" confidently, and its reading wins
    assert decoder.decode("Ca phe sua da", []) == "Cà phê sữa đá"
    assert decoder.decode("Ca phe sua da", [("Cả", 95.0), ("phê", 90.0), ("sữa", 90.0)]) == "Cả phê sữa đá"


def test_a_letter_the_reader_wrote_as_two_is_mended(decoder):
    # a Latin reader writes "ư" as "ur": "Sura" is one edit from the syllable "sua"
    assert decoder.decode("Sura chua dien lanh", [("Sứa", 60.0), ("chữa", 90.0)]) == "Sửa chữa điện lạnh"


def test_words_that_are_no_syllable_and_numbers_are_kept(decoder):
    assert decoder.decode("UNITED", []) == "UNITED"
    assert decoder.decode("xerox", []) == "xerox"
    # a number takes Tesseract's spelling when it read the same characters ("đ" the letter reader cannot write)
    assert decoder.decode("Gia 25.000d", [("25.000đ", 80.0)]) == "Giá 25.000đ"
    assert decoder.decode("Giam 50%", []) == "Giảm 50%"
    assert decoder.decode("", []) == ""
    assert decoder.decode("www.caphe.com Ca phe", []) == "www.caphe.com Cà phê"  # a web address is kept


def test_the_first_letter_takes_tesseracts_capital(decoder):
    assert decoder.decode("ca phe", [("Cà", 90.0), ("phê", 90.0)]) == "Cà phê"
    assert decoder.decode("ca phe", [("Cà", 20.0)]) == "cà phê"  # read unsurely: the letter reader's case


class _Letters:
    def __init__(self, text: str, score: float):
        self.text, self.score = text, score

    def read(self, line):
        return self.text, self.score


class _Tesseract:
    def readings(self, line):
        return [LineReading([("Giảm", 91.0), ("tọc", 40.0)]), LineReading([("độ", 70.0)])]


def test_an_unsure_letter_reading_leaves_the_line_to_tesseract(decoder):
    sure = FusedLineRecogniser(_Letters("Giam toc do", 0.9), _Tesseract(), decoder)
    reading = sure.recognise(None)
    assert reading.text == "Giảm tốc độ" and reading.confidence == pytest.approx(90.0)
    unsure = FusedLineRecogniser(_Letters("Giam toc do", 0.3), _Tesseract(), decoder, correct=str.upper)
    assert unsure.recognise(None).text == "GIẢM TỌC"  # Tesseract's best reading, put right by ``correct``


@pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import rapidocr_onnxruntime, cv2"],
                                   capture_output=True).returncode != 0,
                    reason="the line reader's model is not installed (pip install 'mmtools[ocr]')")
def test_the_letter_reader_reads_a_printed_line_without_its_accents():
    from PIL import Image, ImageDraw, ImageFont

    from mmtools.ocr.letters import CtcLetterReader
    from mmtools.ocr.scenes import DEJAVU

    font = ImageFont.truetype(str(DEJAVU / "DejaVuSans.ttf"), 32)
    image = Image.new("RGB", (420, 52), "white")
    ImageDraw.Draw(image).text((10, 6), "Cho thue phong tro", font=font, fill="black")
    text, score = CtcLetterReader().read(image)
    assert text == "Cho thue phong tro" and score > 0.8
    assert CtcLetterReader().read(Image.new("RGB", (200, 40), "white"))[0] == ""
