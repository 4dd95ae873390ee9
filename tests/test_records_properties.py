"""Property-based tests (hypothesis) of the JSONL reader and of record validation: any bytes, any JSON."""

import io
import math

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmtools.records import decode_vector, encode_vector, iter_lines, read_records, record_id

json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False,
                                                                                    allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)


def read(data: bytes, **kwargs):
    problems = []
    import mmtools.records as records

    original = records._open_input
    records._open_input = lambda source: (io.BytesIO(data), True)
    try:
        found = list(read_records(["x.jsonl"], problems.append, **kwargs))
    finally:
        records._open_input = original
    return found, problems


@given(st.lists(st.binary(max_size=60), max_size=12))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_give_objects_or_one_problem_per_line_never_an_exception(lines):
    data = b"\n".join(line.replace(b"\n", b" ") for line in lines)
    records, problems = read(data)
    non_blank = [line for line in data.split(b"\n") if line.strip()]
    assert all(isinstance(r, dict) for r in records)
    assert len(records) + len(problems) == len(non_blank)
    assert all(p.source.startswith("x.jsonl:") for p in problems)


@given(st.lists(json_objects, max_size=8), st.sampled_from([b"\n", b"\r\n"]))
@settings(max_examples=60)
def test_objects_written_as_jsonl_come_back_equal(objects, newline):
    data = b"".join(orjson.dumps(o) + newline for o in objects)
    records, problems = read(data)
    assert problems == [] and records == objects


@given(st.lists(st.binary(max_size=300), max_size=6), st.integers(8, 200))
def test_lines_over_the_limit_are_skipped_and_the_rest_kept_whole(lines, limit):
    data = b"".join(line.replace(b"\n", b"") + b"\n" for line in lines)
    got = list(iter_lines(io.BufferedReader(io.BytesIO(data), buffer_size=16), limit))
    expected = [line.replace(b"\n", b"") for line in lines]
    assert len(got) == len(expected)
    for (_, line), want in zip(got, expected):
        assert line is None if len(want) > limit else line == want + b"\n"


@given(json_values)
@settings(max_examples=300)
def test_any_embedding_value_decodes_to_a_finite_vector_or_a_value_error(value):
    try:
        vector = decode_vector(value)
    except ValueError:
        return
    assert vector.ndim == 1 and vector.size > 0 and vector.dtype == np.float32
    assert np.isfinite(vector).all()


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=64),
       st.sampled_from(["base64", "list"]))
def test_vectors_survive_both_encodings_exactly(values, fmt):
    vector = np.asarray(values, dtype=np.float32)
    encoded = orjson.loads(orjson.dumps({"embedding": encode_vector(vector, fmt)}))["embedding"]
    np.testing.assert_array_equal(decode_vector(encoded), vector)


@given(json_objects)
def test_every_record_has_a_string_id(record):
    item_id = record_id(record, "fallback")
    assert isinstance(item_id, str) and item_id
    if isinstance(record.get("id"), str) and record["id"]:
        assert item_id == record["id"]


@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=6), st.integers()),
                          st.one_of(st.none(), st.integers(1, 6), st.just("bad"), st.just("nan"))), max_size=12))
@settings(max_examples=40, deadline=None)
def test_index_validation_adds_or_names_every_record(tmp_path_factory, specs):
    from mmtools.index import index_records

    records = []
    for item_id, embedding in specs:
        record = {} if item_id is None else {"id": item_id}
        if embedding == "bad":
            record["embedding"] = "!!"
        elif embedding == "nan":
            record["embedding"] = [math.nan] * 4
        elif embedding is not None:
            record["embedding"] = encode_vector(np.ones(4 if embedding % 2 else embedding, dtype=np.float32))
        record["embedding_model"] = "m"
        records.append(record)
    problems = []
    path = tmp_path_factory.mktemp("idx") / "idx.faiss"
    try:
        summary = index_records(records, path, on_problem=problems.append)
    except Exception as exc:  # only "nothing to index" may stop the write
        assert "no embeddings" in str(exc)
        return
    assert summary.added + summary.replaced + summary.unchanged + summary.skipped == len(records)
    assert summary.skipped == len(problems)
