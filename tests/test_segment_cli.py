"""`mmtools segment` in-process: fields, pass-through, dictionary, normalisation, bad input."""

import unicodedata

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app

runner = CliRunner()


def segment(args, input):
    result = runner.invoke(app, ["segment", *args], input=input, catch_exceptions=False)
    return result, [orjson.loads(line) for line in result.stdout.splitlines()]


def test_segments_the_text_field_in_place_and_passes_the_rest_through():
    result, (record,) = segment([], '{"id": "a", "text": "Một chiếc xe hơi màu đỏ", "n": 1}\n')
    assert result.exit_code == 0
    assert "xe_hơi" in record["text"] and record["text"].startswith("Một chiếc")
    assert (record["id"], record["n"]) == ("a", 1)


def test_into_another_field_and_several_fields_with_lists():
    line = orjson.dumps({"id": "a", "title": "xe hơi", "captions": ["xe hơi màu đỏ", "con mèo"]}).decode()
    result, (record,) = segment(["-f", "title", "-f", "captions", "--into", "{field}_seg"], line + "\n")
    assert result.exit_code == 0
    assert record["title"] == "xe hơi" and record["title_seg"] == "xe_hơi"
    assert record["captions"] == ["xe hơi màu đỏ", "con mèo"]
    assert record["captions_seg"][0].startswith("xe_hơi")


def test_into_without_field_placeholder_and_several_fields_is_a_usage_error():
    result, _ = segment(["-f", "a", "-f", "b", "--into", "out"], "{}\n")
    assert result.exit_code == 2


def test_dictionary_words_are_joined_whatever_the_tone_style(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# my words\nđiều hòa\nngôi nhà\n")
    text = unicodedata.normalize("NFD", "Điều hoà trong ngôi nhà")
    result, (record,) = segment(["--dict", str(words)], orjson.dumps({"text": text}).decode() + "\n")
    assert result.exit_code == 0
    assert record["text"] == "Điều_hòa trong ngôi_nhà"


def test_normalize_only_with_the_new_tone_style_and_lines():
    result, (record,) = segment(["--lines", "--normalize-only", "--tone-style", "new"], "Thủy  thủ hòa bình\n")
    assert record["text"] == "Thuỷ thủ hoà bình"
    assert record["id"].startswith("t:")


def test_bad_records_are_named_passed_through_and_exit_1():
    stdin = b'{"id": "a", "text": "xe h\xc6\xa1i"}\n{"id": "b"}\n{"id": "c", "text": 5}\n\xff\xfe\n{"id": "d", "text": "  "}\n'
    result = runner.invoke(app, ["segment"], input=stdin)
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1
    assert [r["id"] for r in records] == ["a", "b", "c", "d"]
    assert records[0]["text"] == "xe_hơi" and records[2]["text"] == 5
    errors = result.stderr.splitlines()
    assert len(errors) == 4
    assert any(line.startswith("mmtools segment: b:") for line in errors)
    assert any("<stdin>:4" in line and "UTF-8" in line for line in errors)


def test_vncorenlp_without_its_directory_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("MMTOOLS_VNCORENLP_DIR", raising=False)
    result, records = segment(["--backend", "vncorenlp", "--vncorenlp-dir", str(tmp_path / "nope")],
                              '{"text": "xe hơi"}\n')
    assert result.exit_code == 3 and records == []
    assert "VnCoreNLP" in result.stderr and "Traceback" not in result.stderr


def test_jobs_give_the_same_output_as_one_process():
    lines = "".join(orjson.dumps({"id": str(i), "text": f"xe hơi số {i} đậu trước ngôi nhà"}).decode() + "\n"
                    for i in range(250))
    _, single = segment(["--jobs", "1"], lines)
    _, parallel = segment(["--jobs", "2"], lines)
    assert single == parallel and len(single) == 250


@pytest.mark.parametrize("text", ["", "😀😀", "...!!!", "2024"])
def test_odd_texts_do_not_crash(text):
    result, records = segment(["--lines"], f"{text}\n")
    assert result.exit_code == 0 and "Traceback" not in result.stderr


@pytest.mark.parametrize("template", ["{x}", "{", "{0}"])
def test_a_bad_into_template_is_a_usage_error(template):
    result, records = segment(["--into", template], '{"text": "xe hơi"}\n')
    assert result.exit_code == 2 and records == []
    assert "--into" in result.stderr and "internal error" not in result.stderr


def test_records_without_ids_are_numbered_across_the_whole_stream():
    from mmtools.text.fields import transform_fields

    problems = []
    records = [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"other": 1}]
    out = list(transform_fields(records, lambda texts: [t.upper() for t in texts], ["text"], chunk_size=2,
                                on_problem=problems.append))
    assert [r.get("text") for r in out] == ["A", "B", "C", None]
    assert [p.source for p in problems] == ["record 4"]


def test_plain_text_without_lines_suggests_lines_once():
    result, records = segment([], "Một chiếc xe hơi\nCon mèo đen\n")
    assert result.exit_code == 1 and records == []
    messages = result.stderr.splitlines()
    assert len(messages) == 2 and all("<stdin>:" in m and "not valid JSON" in m for m in messages)
    assert "--lines" in messages[0] and "--lines" not in messages[1]
    fixed, (first, second) = segment(["--lines"], "Một chiếc xe hơi\nCon mèo đen\n")
    assert fixed.exit_code == 0 and first["text"] == "Một chiếc xe_hơi"
