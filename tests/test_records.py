import math
import unicodedata

import numpy as np
import pytest

from mmtools.errors import Problem
from mmtools.records import (RecordWriter, atomic_path, decode_vector, encode_vector, read_records,
                             read_text_lines, text_id)


def test_read_records_reports_bad_lines_and_keeps_the_rest(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "a"}\n\nnot json\n[1, 2]\n{"id": "b\xff"}\n{"id": "c", "x": {"y": 1}}\n')
    problems: list[Problem] = []
    records = list(read_records([str(path)], problems.append))
    assert [r["id"] for r in records] == ["a", "c"]
    assert records[1]["x"] == {"y": 1}
    reasons = {p.source.rsplit(":", 1)[1]: p.reason for p in problems}
    assert "not valid JSON" in reasons["3"]
    assert "expected a JSON object" in reasons["4"]
    assert "not valid UTF-8" in reasons["5"]


def test_read_text_lines_skips_blank_and_invalid_utf8(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("xe hơi\n\n".encode() + b"\xff\xfe bad\n" + "con mèo\r\n".encode())
    problems = []
    lines = list(read_text_lines([str(path)], problems.append))
    assert [text for _, text in lines] == ["xe hơi", "con mèo"]
    assert len(problems) == 1 and problems[0].source.endswith(":3")


def test_missing_input_file_is_a_clear_error(tmp_path):
    from mmtools.errors import MmtoolsError

    with pytest.raises(MmtoolsError, match="does not exist"):
        list(read_records([str(tmp_path / "nope.jsonl")]))


@pytest.mark.parametrize("fmt", ["base64", "list"])
def test_vector_round_trip(fmt):
    vector = np.array([0.25, -1.5, 3.0, 1e-7], dtype=np.float32)
    encoded = encode_vector(vector, fmt)
    assert isinstance(encoded, str if fmt == "base64" else list)
    assert np.array_equal(decode_vector(encoded), vector)


@pytest.mark.parametrize("value, reason", [
    ("not base64!!", "base64"),
    ("AAAAAAA=", "whole number"),  # 5 bytes
    ([1.0, math.nan], "NaN"),
    ([], "empty"),
    ([[1.0], [2.0]], "flat"),
    (None, "no embedding"),
    (["a", "b"], "other than numbers"),
])
def test_decode_vector_rejects_malformed_values(value, reason):
    with pytest.raises(ValueError, match=reason):
        decode_vector(value)


def test_text_id_is_stable_across_unicode_forms():
    nfc = "Hòa bình"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    assert text_id(nfc) == text_id(nfd)
    assert text_id(nfc) != text_id("hòa bình")


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    with atomic_path(target) as tmp:
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"


def test_record_writer_writes_one_json_object_per_line(tmp_path):
    import io

    import orjson

    stream = io.BytesIO()
    writer = RecordWriter(stream)
    writer.write_all([{"id": "a", "text": "xe hơi"}, {"id": "b", "v": np.float32(0.5)}])
    lines = stream.getvalue().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == ["a", "b"]
    assert "xe hơi".encode() in lines[0]  # UTF-8, not \u escapes
