import os
import re
import subprocess
import sys
import types
import unicodedata
from pathlib import Path

import pytest

from mmtools.errors import MissingDependencyError, MmtoolsError, UsageError
from mmtools.text import backends
from mmtools.text.alignment import gap_joins
from mmtools.text.segment import BACKENDS, DEFAULT_BACKEND, Segmenter, get_segmenter, load_dictionary

SRC = Path(__file__).resolve().parent.parent / "src"


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


@pytest.fixture(scope="module")
def underthesea_segmenter():
    pytest.importorskip("underthesea")
    return get_segmenter("underthesea")


class FixedSegmenter(Segmenter):
    """A back end that groups syllables as told, to test what happens around any back end."""

    name = "fixed"

    def __init__(self, groups: dict[str, list[str]], **options):
        super().__init__(**options)
        self.groups = groups

    def _backend_words(self, text):
        return self.groups.get(text, text.split())


def assert_only_spaces_became_underscores(result: str, normalized: str) -> None:
    assert len(result) == len(normalized), (result, normalized)
    for got, expected in zip(result, normalized):
        assert got == expected or (got, expected) == ("_", " "), (result, normalized)


# --- underthesea, the default back end ------------------------------------------------------------------


def test_backends_and_default():
    assert BACKENDS == ("underthesea", "vncorenlp", "pyvi")
    assert DEFAULT_BACKEND == "underthesea"


def test_known_answer(underthesea_segmenter):
    result = underthesea_segmenter.segment("Một chiếc xe hơi màu đỏ đậu trước ngôi nhà")
    assert result == "Một chiếc xe_hơi màu đỏ đậu trước ngôi nhà"
    with_dictionary = get_segmenter("underthesea", dictionary=["ngôi nhà"])
    assert with_dictionary.segment("Một chiếc xe hơi màu đỏ đậu trước ngôi nhà") == (
        "Một chiếc xe_hơi màu đỏ đậu trước ngôi_nhà"
    )


def test_output_is_the_normalised_text_with_underscores(underthesea_segmenter):
    text = "  Ông Lộc nói : bán đất ,  giá 3,5 tỷ ( http://a.com/x_y ) 😀 ko , thuỷ điện Hoà Bình  ."
    result = underthesea_segmenter.segment(text)
    # Normalised, punctuation as tokens of its own (RDRsegmenter's convention, which PhoBERT was trained on).
    expected_text = "Ông Lộc nói : bán đất , giá 3,5 tỷ ( http://a.com/x_y ) 😀 ko , thủy điện Hòa Bình ."
    assert_only_spaces_became_underscores(result, expected_text)
    assert "http://a.com/x_y" in result  # the URL's own "_" is kept, nothing added inside it
    assert result.endswith("Hòa_Bình .")
    assert "😀 ko" in result  # never glued to an emoji


def test_phobert_convention_design_example(underthesea_segmenter):
    # RDRsegmenter's output, which PhoBERT was pre-trained on: "có" is a word of its own, not "có_điều_hòa".
    assert underthesea_segmenter.segment("Phòng mát, có điều hòa.") == "Phòng mát , có điều_hòa ."
    assert underthesea_segmenter.segment("Phòng mát , có điều_hòa .") == "Phòng mát , có điều_hòa ."


@pytest.mark.parametrize("text, expected", [
    ("Giá 3.500.000đ/tháng (gần ĐH)!", "Giá 3.500.000đ/tháng ( gần ĐH ) !"),  # inside a word it stays
    ('"xe" đỏ...', '" xe " đỏ ...'),  # a run of one mark is one token
    ("lúc 10:30, a_b@x.com.", "lúc 10:30 , a_b@x.com ."),
    ("vui :-) nhé", "vui :-) nhé"),  # a chunk of only punctuation stays whole
    ("__init__.", "__init__ ."),
])
def test_punctuation_is_split_off_word_edges(text, expected):
    from mmtools.text.segment import split_punctuation

    assert split_punctuation(text) == expected


def test_nfd_and_tone_styles_give_identical_output(underthesea_segmenter):
    old = "Thủy điện Hòa Bình có khỏe không"
    new = "Thuỷ điện Hoà Bình có khoẻ không"
    expected = underthesea_segmenter.segment(old)
    for text in (new, nfd(new), nfd(old)):
        assert underthesea_segmenter.segment(text) == expected
    new_style = get_segmenter("underthesea", tone_style="new")
    assert new_style.segment(old) == new_style.segment(new) == expected.replace("Thủy", "Thuỷ").replace(
        "Hòa", "Hoà").replace("khỏe", "khoẻ")


@pytest.mark.parametrize(
    "text",
    [
        "Một chiếc xe hơi màu đỏ đậu trước ngôi nhà",
        "Ông Lộc nói : bán đất , giá không được ủy ban tỉnh phê duyệt là không thể chấp nhận được .",
        "Người đàn ông đang chơi tennis trên sân  .",
        "máy điều hoà nhiệt độ, tủ lạnh và xe_hơi",
        "3,5 tỷ đồng (2014) 😀 :) __init__",
    ],
)
def test_segmenting_segmented_text_changes_nothing(underthesea_segmenter, text):
    once = underthesea_segmenter.segment(text)
    assert underthesea_segmenter.segment(once) == once


def test_underscores_in_the_input_are_never_broken(underthesea_segmenter):
    result = underthesea_segmenter.segment("con mèo_đen nằm trên ghế_sofa")
    assert "mèo_đen" in result.split() and "ghế_sofa" in result.split()


@pytest.mark.parametrize("text", ["", "   ", "...", " , . !", "😀 🚗🏠", "12 345 6,7", "\u200b"])
def test_text_without_words_comes_back_normalised(underthesea_segmenter, text):
    from mmtools.text import normalize_text

    assert underthesea_segmenter.segment(text) == normalize_text(text)


def test_segment_many_keeps_order_and_equals_the_loop(underthesea_segmenter, monkeypatch):
    monkeypatch.setattr("mmtools.text.segment.MIN_TEXTS_PER_PROCESS", 50)  # use the pool for 240 texts
    texts = [f"Một chiếc xe hơi màu đỏ số {i} đậu trước ngôi nhà" for i in range(120)]
    texts += ["Người đàn ông đi xe máy trên đường phố Hà Nội", "", "hoà bình"] * 40
    expected = [underthesea_segmenter.segment(text) for text in texts]
    assert underthesea_segmenter.segment_many(texts) == expected
    assert underthesea_segmenter.segment_many(texts, jobs=2) == expected
    assert underthesea_segmenter.segment_many([], jobs=2) == []


def test_segment_many_uses_worker_processes_for_large_inputs(monkeypatch):
    segmenter = FixedSegmenter({})
    monkeypatch.setattr(type(segmenter), "segment", lambda self, text: f"{os.getpid()}:{text}")
    monkeypatch.setattr("mmtools.text.segment.MIN_TEXTS_PER_PROCESS", 5)
    results = segmenter.segment_many([str(i) for i in range(40)], jobs=2)
    assert [r.split(":")[1] for r in results] == [str(i) for i in range(40)]
    assert {r.split(":")[0] for r in results} - {str(os.getpid())}  # some came from workers


def test_importing_segment_does_not_import_backends():
    code = (
        "import sys, mmtools.text, mmtools.text.segment, mmtools.text.normalize; "
        "heavy = [m for m in ('underthesea', 'transformers', 'torch', 'pyvi', 'py_vncorenlp', 'jnius') "
        "if m in sys.modules]; print(heavy)"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "[]"


# --- user dictionary -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, text",
    [
        ("điều hòa", "máy điều hoà"),
        ("điều hoà", "máy điều hòa"),
        (nfd("điều hoà"), "máy điều hòa"),
        ("điều hòa", nfd("máy điều hoà")),
        ("ĐIỀU HÒA", "máy điều hoà"),
        ("điều_hòa", "máy điều hoà"),
    ],
)
def test_dictionary_joins_whatever_the_form(entry, text):
    segmenter = FixedSegmenter({}, dictionary=[entry])
    assert segmenter.segment(text) == "máy điều_hòa"
    new_style = FixedSegmenter({}, dictionary=[entry], tone_style="new")
    assert new_style.segment(text) == "máy điều_hoà"


def test_dictionary_keeps_case_and_surrounding_punctuation():
    segmenter = FixedSegmenter({}, dictionary=["ngôi nhà", "gần trường"])
    assert segmenter.segment("NGÔI NHÀ gần trường.") == "NGÔI_NHÀ gần_trường ."
    assert segmenter.segment("(ngôi nhà)") == "( ngôi_nhà )"
    assert segmenter.segment("ngôi, nhà") == "ngôi , nhà"  # never across punctuation


def test_dictionary_longest_match_first():
    segmenter = FixedSegmenter({}, dictionary=["xe hơi", "xe hơi điện", "hơi điện"])
    assert segmenter.segment("chiếc xe hơi điện mới") == "chiếc xe_hơi_điện mới"
    assert segmenter.segment("chiếc xe hơi cũ") == "chiếc xe_hơi cũ"


def test_dictionary_words_win_over_back_end_groups():
    # The back end joined "điều hòa nhiệt độ" as one word: the dictionary word is cut out, the rest keeps
    # the back end's grouping.
    groups = {"điều hòa nhiệt độ": ["điều hòa nhiệt độ"]}
    assert FixedSegmenter(groups, dictionary=["điều hoà"]).segment("điều hoà nhiệt độ") == "điều_hòa nhiệt_độ"
    # The back end's words straddle the dictionary word: "máy điều" + "hòa nhiệt" + "độ".
    groups = {"máy điều hòa nhiệt độ": ["máy điều", "hòa nhiệt", "độ"]}
    segmenter = FixedSegmenter(groups, dictionary=["điều hòa"])
    assert segmenter.segment("máy điều hòa nhiệt độ") == "máy điều_hòa nhiệt độ"
    assert FixedSegmenter(groups).segment("máy điều hòa nhiệt độ") == "máy_điều hòa_nhiệt độ"


def test_dictionary_with_real_back_end(underthesea_segmenter):
    segmenter = get_segmenter("underthesea", dictionary=["điều hòa", "ngôi nhà", "gần trường"])
    result = segmenter.segment(nfd("Máy điều hoà nhiệt độ trong ngôi nhà gần trường học."))
    assert result == "Máy điều_hòa nhiệt_độ trong ngôi_nhà gần_trường học ."
    assert segmenter.segment(result) == result


def test_input_underscores_win_over_dictionary_and_back_end():
    groups = {"máy điều hòa": ["máy điều hòa"]}
    segmenter = FixedSegmenter(groups, dictionary=["máy điều"])
    assert segmenter.segment("máy điều_hòa") == "máy điều_hòa"


def test_load_dictionary(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# my words\n\nđiều hòa\n  ngôi   nhà  \n# gần trường\nxe_hơi\n", encoding="utf-8")
    assert load_dictionary(path) == ["điều hòa", "ngôi nhà", "xe_hơi"]
    assert load_dictionary(str(path)) == ["điều hòa", "ngôi nhà", "xe_hơi"]


def test_load_dictionary_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(MmtoolsError, match="nope.txt"):
        load_dictionary(missing)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("điều hòa".encode("utf-16"))
    with pytest.raises(MmtoolsError, match="latin.txt.*not UTF-8"):
        load_dictionary(latin)


# --- alignment with back ends that rewrite text ----------------------------------------------------------


def test_alignment_survives_rewritten_characters():
    # underthesea writes "hòa" for "hoà" and "ngành" for "nghành"
    assert gap_joins(["điều", "hoà", "nhiệt", "độ"], ["điều hòa", "nhiệt độ"]) == [True, False, True]
    assert gap_joins(["nghành", "giáo", "dục"], ["ngành", "giáo dục"]) == [False, True]
    # punctuation split off by the back end, "_" joiners in its output, a literal "_" in ours
    assert gap_joins(["xe", "hơi."], ["xe_hơi", "."]) == [True]
    assert gap_joins(["a_b", "xe", "hơi"], ["a_b", "xe_hơi"]) == [False, True]


# --- optional back ends ----------------------------------------------------------------------------------


def test_unknown_backend_and_tone_style():
    with pytest.raises(UsageError, match="unknown segmentation back end"):
        get_segmenter("jieba")
    with pytest.raises(UsageError, match="tone style"):
        FixedSegmenter({}, tone_style="modern")


def test_pyvi_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvi", None)  # makes "import pyvi" fail
    with pytest.raises(MissingDependencyError, match="pip install pyvi"):
        get_segmenter("pyvi")


def test_pyvi_when_installed():
    pytest.importorskip("pyvi")
    segmenter = get_segmenter("pyvi", dictionary=["ngôi nhà"])
    assert segmenter.segment("Một chiếc xe hơi màu đỏ đậu trước ngôi nhà  .") == (
        "Một chiếc xe_hơi màu đỏ đậu trước ngôi_nhà."
    )


@pytest.fixture
def vncorenlp_dir(tmp_path, monkeypatch):
    """A directory laid out like a VnCoreNLP download (empty files), and a clean model cache."""
    directory = tmp_path / "vncorenlp"
    (directory / "models" / "wordsegmenter").mkdir(parents=True)
    for name in ("VnCoreNLP-1.2.jar", "models/wordsegmenter/vi-vocab", "models/wordsegmenter/wordsegmenter.rdr"):
        (directory / name).write_bytes(b"")
    monkeypatch.setattr(backends, "_vncorenlp_models", {})
    monkeypatch.delenv("MMTOOLS_VNCORENLP_DIR", raising=False)
    return directory


def test_vncorenlp_without_directory(vncorenlp_dir):
    with pytest.raises(MissingDependencyError, match="MMTOOLS_VNCORENLP_DIR"):
        get_segmenter("vncorenlp")


def test_vncorenlp_directory_missing_or_incomplete(vncorenlp_dir, tmp_path, monkeypatch):
    missing = tmp_path / "not-there"
    with pytest.raises(MissingDependencyError, match=re.escape(f"download VnCoreNLP into {missing}")) as error:
        get_segmenter("vncorenlp", vncorenlp_dir=str(missing))
    assert "VnCoreNLP-1.2.jar" in error.value.message
    (vncorenlp_dir / "models/wordsegmenter/wordsegmenter.rdr").unlink()
    monkeypatch.setenv("MMTOOLS_VNCORENLP_DIR", str(vncorenlp_dir))  # the variable is the fallback
    with pytest.raises(MissingDependencyError, match="missing: models/wordsegmenter/wordsegmenter.rdr"):
        get_segmenter("vncorenlp")
    assert "py_vncorenlp" not in sys.modules


def test_vncorenlp_without_java(vncorenlp_dir, monkeypatch):
    monkeypatch.setattr(backends.shutil, "which", lambda name: None)
    with pytest.raises(MissingDependencyError, match="install Java 17"):
        get_segmenter("vncorenlp", vncorenlp_dir=vncorenlp_dir)


def test_vncorenlp_without_java_on_empty_path(vncorenlp_dir, monkeypatch):
    monkeypatch.setenv("PATH", str(vncorenlp_dir))
    with pytest.raises(MissingDependencyError, match="no `java` is on PATH"):
        get_segmenter("vncorenlp", vncorenlp_dir=vncorenlp_dir)


def test_vncorenlp_without_py_vncorenlp(vncorenlp_dir, monkeypatch):
    monkeypatch.setattr(backends.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setitem(sys.modules, "py_vncorenlp", None)
    with pytest.raises(MissingDependencyError, match="pip install py_vncorenlp"):
        get_segmenter("vncorenlp", vncorenlp_dir=vncorenlp_dir)


def fake_py_vncorenlp(fail: bool = False):
    """Behaves like py_vncorenlp: changes the working directory and joins words with "_"."""
    module = types.ModuleType("py_vncorenlp")
    module.created = []

    def download_model(save_dir="./"):
        raise AssertionError("must never download")

    class VnCoreNLP:
        def __init__(self, max_heap_size="-Xmx2g", annotators=None, save_dir="./"):
            os.chdir(save_dir)
            if fail:
                raise RuntimeError("JVM failed")
            module.created.append((tuple(annotators), save_dir))

        def word_segment(self, text):
            return [text.replace("xe hơi", "xe_hơi").replace(".", " .")]

    module.download_model = download_model
    module.VnCoreNLP = VnCoreNLP
    return module


def test_vncorenlp_restores_working_directory(vncorenlp_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(backends.shutil, "which", lambda name: "/usr/bin/java")
    module = fake_py_vncorenlp()
    monkeypatch.setitem(sys.modules, "py_vncorenlp", module)
    monkeypatch.chdir(tmp_path)
    segmenter = get_segmenter("vncorenlp", vncorenlp_dir=vncorenlp_dir, dictionary=["ngôi nhà"])
    assert Path.cwd() == tmp_path
    assert module.created == [(("wseg",), str(vncorenlp_dir.resolve()))]
    assert segmenter.segment("Một chiếc xe hơi đậu trước ngôi nhà  .") == "Một chiếc xe_hơi đậu trước ngôi_nhà ."
    assert segmenter.segment_many(["xe hơi"] * 300, jobs=2) == ["xe_hơi"] * 300  # stays in-process
    get_segmenter("vncorenlp", vncorenlp_dir=vncorenlp_dir)
    assert len(module.created) == 1  # one model per directory and process


def test_vncorenlp_restores_working_directory_on_failure(vncorenlp_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(backends.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setitem(sys.modules, "py_vncorenlp", fake_py_vncorenlp(fail=True))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError):
        get_segmenter("vncorenlp", vncorenlp_dir=vncorenlp_dir)
    assert Path.cwd() == tmp_path
