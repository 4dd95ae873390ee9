"""The general accent model (no index): everyday photo queries, n-best alternatives, the compiled model in
the cache, the user's own text (--learn, $MMTOOLS_HOME/accents), and light imports for one-line commands."""

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli.app import app
from mmtools.text import accent_model
from mmtools.text.accent_corpus import PHRASES, phrase_lines
from mmtools.text.accents import fold
from mmtools.text.restore import build_restorer, load_restorer

runner = CliRunner()
QUERIES = Path(__file__).parent / "data" / "photo_queries.vi.txt"
REPO = Path(__file__).resolve().parent.parent


def queries():
    return [line.strip() for line in QUERIES.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def test_everyday_photo_queries_typed_without_accents_come_back_right():
    written = queries()
    assert len(written) >= 50 and "xe hơi màu đỏ" in written
    assert not set(written) & set(phrase_lines(PHRASES))  # the model never saw a query whole
    restorer = load_restorer()
    restored = {query: restorer.restore(fold(query)) for query in written}
    wrong = {query: got for query, got in restored.items() if got != query}
    assert restored["xe hơi màu đỏ"] == "xe hơi màu đỏ"
    assert len(wrong) <= 0.1 * len(written), wrong  # measured 66 of 70 exactly right
    assert sum(fold(q) == q for q in written) < 0.1 * len(written)  # leaving them bare would be far off


def test_alternatives_hedge_only_where_the_best_restorations_are_close():
    restorer = load_restorer()
    sure = restorer.alternatives("xe hoi mau do", n=3)
    assert sure == [("xe hơi màu đỏ", 1.0)]
    assert restorer.alternatives("xe hơi màu đỏ", n=3) == [("xe hơi màu đỏ", 1.0)]  # typed with accents
    assert restorer.alternatives("mua tren duong", n=1) == [(restorer.restore("mua tren duong"), 1.0)]
    unsure = restorer.alternatives("mua tren duong", n=3)  # "mùa" (season) or "mưa" (rain)?
    texts = [text for text, _ in unsure]
    weights = [weight for _, weight in unsure]
    assert 1 < len(unsure) <= 3 and len(set(texts)) == len(texts)
    assert texts[0] == restorer.restore("mua tren duong")  # best first, the same as restore()
    assert "mưa trên đường" in texts
    assert weights == sorted(weights, reverse=True) and abs(sum(weights) - 1) < 1e-9
    assert all(fold(text) == "mua tren duong" for text in texts)
    two_parts = restorer.alternatives("Mua tren duong, 2 ly ca phe", n=3)  # punctuation and digits kept, case too
    assert len(two_parts) > 1
    assert all(text.endswith(", 2 ly cà phê") and text.startswith("M") for text, _ in two_parts)


def test_context_beats_each_syllables_most_frequent_form():
    plain, model = build_restorer(baseline=True), load_restorer()
    written = queries()
    right = sum(model.restore(fold(q)) == q for q in written)
    assert right >= sum(plain.restore(fold(q)) == q for q in written) + 10


def test_the_model_is_compiled_once_into_the_cache_and_opened_from_there(tmp_path):
    key = accent_model.model_key()
    path = accent_model.model_path(key)
    load_restorer().restore("xe hoi")  # compiled by now (by this test or an earlier one)
    assert path.exists() and path.stat().st_size < 20 * 2**20
    opened = accent_model.NgramModel.open(path)  # what a new process does: no counting
    assert type(opened.unigrams).__name__ == "Table"
    from mmtools.text.restore import AccentRestorer

    assert AccentRestorer(opened).restore("co gai luot song tren bien") == "cô gái lướt sóng trên biển"


def test_a_damaged_compiled_model_is_counted_again_and_replaced(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))
    path = accent_model.model_path(accent_model.model_key())
    path.parent.mkdir(parents=True)
    path.write_bytes(b"SQLite format 3\x00 but cut short")
    accent_model._model.cache_clear()
    try:
        restorer = build_restorer()
        assert restorer.restore("xe hoi mau do") == "xe hơi màu đỏ"
        assert "cannot be read" in caplog.text and str(path) in caplog.text
        assert accent_model.NgramModel.open(path).unigrams.get("màu")  # replaced by a good one
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left
    finally:
        accent_model._model.cache_clear()


def test_users_teach_it_their_own_words_with_learn_and_their_accents_folder(tmp_path, monkeypatch):
    mine = tmp_path / "mine.txt"
    mine.write_text("Tối nay lủng củng chuyện nhà\n", encoding="utf-8")
    assert build_restorer().restore("lung cung") != "lủng củng"  # the general model knows other words
    restored = runner.invoke(app, ["restore-accents", "--lines", "--learn", str(mine)], input="lung cung\n")
    assert restored.exit_code == 0, restored.stderr
    assert restored.stdout == "lủng củng\n"
    missing = runner.invoke(app, ["restore-accents", "--lines", "--learn", str(tmp_path / "nope.txt")],
                            input="lung cung\n")
    assert missing.exit_code != 0 and "nope.txt" in missing.stderr and missing.stdout == ""
    home = tmp_path / "home"
    (home / "accents").mkdir(parents=True)
    (home / "accents" / "words.txt").write_text("lủng củng\n", encoding="utf-8")
    monkeypatch.setenv("MMTOOLS_HOME", str(home))
    assert build_restorer().restore("lung cung") == "lủng củng"


def test_restore_accents_prints_alternatives_as_jsonl():
    out = runner.invoke(app, ["restore-accents", "--lines", "-n", "3"], input="xe hoi mau do\nmua tren duong\n")
    assert out.exit_code == 0, out.stderr
    first, second = (orjson.loads(line) for line in out.stdout.splitlines())
    assert first == {"text": "xe hoi mau do", "alternatives": [["xe hơi màu đỏ", 1.0]]}
    assert second["text"] == "mua tren duong" and len(second["alternatives"]) > 1


@pytest.mark.slow
def test_one_line_commands_import_neither_transformers_nor_all_of_underthesea():
    code = ("import sys, runpy; sys.argv = ['mmtools', '-q', '{}', '--lines']; "
            "from mmtools.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('transformers' in sys.modules, 'torch' in sys.modules, file=sys.stderr)")
    for command in ("restore-accents", "segment"):
        done = subprocess.run([sys.executable, "-c", code.format(command)], input="xe hoi mau do\n",
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip(), done.stderr
        assert done.stderr.strip().splitlines()[-1] == "False False", (command, done.stderr)


def test_a_compile_that_fails_midway_leaves_no_model_file_and_the_restorer_still_works(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))
    path = accent_model.model_path(accent_model.model_key())
    real_save = accent_model.NgramModel.save

    def save_then_fail(self, where):
        real_save(self, where)  # every byte written to the temporary file, then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(accent_model.NgramModel, "save", save_then_fail)
    assert build_restorer().restore("xe hoi mau do") == "xe hơi màu đỏ"
    assert not path.exists() and list(path.parent.iterdir()) == []  # neither a model nor a temporary


def test_a_collections_texts_add_to_the_compiled_model_opened_from_the_cache():
    """What `restore-accents --index` does in a new process: the compiled file, plus the index's texts."""
    from mmtools.text.restore import AccentRestorer, count_texts

    path = accent_model.model_path(accent_model.model_key())
    load_restorer().restore("xe hoi")  # compiled by now
    opened = accent_model.NgramModel.open(path)
    both = AccentRestorer(opened.with_counts(count_texts(["Tối nay lủng củng chuyện nhà ."] * 3), 4.0))
    assert both.restore("lung cung") == "lủng củng"
    assert both.restore("xe hoi mau do") == "xe hơi màu đỏ"  # the general words are still there
    assert both.candidates("lung")[0] in ("lưng", "lủng") and "lủng" in both.candidates("lung")
