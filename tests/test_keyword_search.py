"""Keyword search (FTS5 in a FAISS index's metadata, BM25 in a Milvus collection), hybrid ranking, and
--where filters applied before ranking. The keyword tests run on both backends: the same queries must find
the same records."""

import json
import unicodedata

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.index import IndexReader, index_records
from mmtools.index import filters, fulltext
from mmtools.index.backends import open_reader
from mmtools.records import encode_vector
from mmtools.text.accents import fold, syllables

from conftest import TEST_PHOTOS

runner = CliRunner()
KINDS = ["flat", "hnsw", "ivf", "ivfpq"]
BACKENDS = ["faiss", "milvus"]


def run(args, input=None):
    return runner.invoke(app, args, input=input, catch_exceptions=False)


def json_lines(text):
    return [orjson.loads(line) for line in text.splitlines()]


def unit_vectors(n, dim=16, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def with_vectors(records, seed=0):
    vectors = unit_vectors(len(records), seed=seed)
    return [{**r, "embedding": encode_vector(v), "embedding_model": "m"} for r, v in zip(records, vectors)]


def keyword_ids(index, query, k=1000, among=None):
    with open_reader(index) as reader:
        return [hit.id for hit in reader.keyword_search(query, k, among)]


def new_index(folder, backend, name="photos"):
    """Where a test's index goes: a FAISS file, or a collection in a Milvus Lite file."""
    if backend == "milvus":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
        return f"milvus-lite://{folder}/kw.db/{name}"
    return folder / f"{name}.faiss"


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def photo_captions():
    path = TEST_PHOTOS / "captions.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", params=BACKENDS)
def caption_index(tmp_path_factory, photo_captions, request):
    index = new_index(tmp_path_factory.mktemp("captions"), request.param)
    index_records(with_vectors(photo_captions), index)
    return index


# ------------------------------------------------------------------------------------------------ full text


@pytest.mark.parametrize("words", ["bóng chày", "áo đỏ", "sân quần vợt", "đá bóng"])
def test_accented_and_unaccented_queries_find_exactly_the_photos_whose_captions_hold_the_words(
        caption_index, photo_captions, words):
    def holds(caption, query):
        return set(map(fold, syllables(query))) <= set(map(fold, syllables(caption)))

    expected = {r["id"] for r in photo_captions if any(holds(c, words) for c in r["captions"])}
    exact = {r["id"] for r in photo_captions
             if any(set(syllables(words)) <= set(syllables(unicodedata.normalize("NFC", c.lower())))
                    for c in r["captions"])}
    assert expected and exact
    accented = keyword_ids(caption_index, words)
    assert set(accented) == expected
    assert set(keyword_ids(caption_index, fold(words))) == expected
    assert set(keyword_ids(caption_index, words.upper())) == expected
    assert set(accented[:len(exact)]) == exact  # exact matches first


def test_an_exact_accented_match_ranks_above_a_folded_one_and_d_folds(tmp_path, backend):
    index = new_index(tmp_path, backend)
    texts = ["xe hội màu đỏ", "xe hơi màu đỏ", "xe hoi mau do", "một con mèo"] + [f"ảnh số {i}" for i in range(20)]
    index_records(with_vectors([{"id": f"r{i}", "caption": t} for i, t in enumerate(texts)]), index)
    assert keyword_ids(index, "xe hơi màu đỏ")[0] == "r1"
    assert keyword_ids(index, "xe hoi mau do")[0] == "r2"
    assert set(keyword_ids(index, "XE HOI MAU DO")) == {"r0", "r1", "r2"}
    assert set(keyword_ids(index, "Đỏ")[:2]) == {"r0", "r1"} and keyword_ids(index, "Đỏ")[2] == "r2"
    assert set(keyword_ids(index, "do")) == {"r0", "r1", "r2"}


def test_quoted_words_match_as_a_phrase_and_never_across_two_captions(tmp_path, backend):
    index = new_index(tmp_path, backend)
    records = [{"id": "apart", "caption": "hơi nước bốc lên từ chiếc xe"},
               {"id": "phrase", "caption": "chiếc xe hơi cũ"},
               {"id": "split", "captions": ["một chiếc xe", "hơi nước"]},
               {"id": "segmented", "text": "chiếc xe_hơi mới"}]
    index_records(with_vectors(records), index)
    assert set(keyword_ids(index, "xe hoi")) == {"apart", "phrase", "segmented"}
    assert set(keyword_ids(index, '"xe hoi"')) == {"phrase", "segmented"}
    assert keyword_ids(index, '"hoi xe"') == [] and keyword_ids(index, "mot hoi") == []  # order; one caption


def test_texts_follow_updates_removals_and_the_fields_named_at_index_time(tmp_path, backend):
    index = new_index(tmp_path, backend)
    records = [{"id": "a", "caption": "bãi biển", "path": "photos/quan_ca_phe.jpg",
                "tags": [{"label": "hoàng hôn", "score": 0.9}], "note": "ghi chú riêng"},
               {"id": "b", "ocr_text": "Cà phê sữa đá 25.000đ", "note": "khác"}]
    index_records(with_vectors(records), index)
    assert set(keyword_ids(index, "ca phe")) == {"a", "b"}  # a by its file name
    assert keyword_ids(index, "hoang hon") == ["a"]
    assert keyword_ids(index, "25.000đ") == ["b"]
    assert keyword_ids(index, "ghi chu") == []
    index_records([], index, text_fields=["note"])  # a new text field: what the index holds is indexed
    assert keyword_ids(index, "ghi chu") == ["a"]
    changed = [{**records[0], "caption": "núi cao", "note": "mới"}]
    index_records(with_vectors(changed), index)  # same vector, other fields: updated in place
    assert keyword_ids(index, "bien") == [] and keyword_ids(index, "nui") == ["a"]
    assert keyword_ids(index, "moi") == ["a"]  # the index remembered --text-field note
    index_records([], index, remove_ids=["b"])
    assert keyword_ids(index, "sua da") == []


def test_an_index_from_before_full_text_gets_its_texts_on_the_next_write(tmp_path):
    import sqlite3

    from mmtools.index import metadata_path

    index = tmp_path / "idx.faiss"
    index_records(with_vectors([{"id": "a", "caption": "con mèo"}, {"id": "b", "caption": "con chó"}]), index)
    db = sqlite3.connect(metadata_path(index))
    db.executescript("DROP TABLE fulltext; DROP TABLE fulltext_docs; DROP TABLE fulltext_fields;")
    db.commit()
    db.close()
    assert keyword_ids(index, "meo") == []
    index_records([], index)
    assert keyword_ids(index, "meo") == ["a"]


def test_a_snippet_marks_the_matched_words_and_keeps_the_accents():
    assert fulltext.snippet("Một chiếc Xe Hơi màu đỏ.", "xe hoi") == "Một chiếc [Xe Hơi] màu đỏ."
    long = " ".join(["từ"] * 50) + " cà phê " + " ".join(["đá"] * 50)
    cut = fulltext.snippet(long, "ca phe")
    assert "[cà phê]" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) < 120


# ------------------------------------------------------------------------------------------------ filters


@pytest.mark.parametrize("condition, expected", [
    ("year=2020", {"a"}), ("year!=2020", {"b", "c"}), ("year>=2021", {"b"}), ("year<2021", {"a"}),
    ("tags=biển", {"a", "c"}), ("tags!=biển", {"b"}), ("tags=hoàng hôn", {"c"}),
    ("taken_at>=2024-01-01", {"b", "c"}), ("taken_at<=2024-03-05", {"a", "c"}),
    ("taken_at>2024-03-05", {"b"}), ("place~ha noi", {"a"}), ("place~Hà", {"a"}), ("gps.lat<15", {"b"}),
    ("camera=canon", {"b"}), ("missing=x", set()),
])
def test_conditions_on_numbers_dates_lists_and_text(condition, expected):
    records = {
        "a": {"year": 2020, "tags": ["biển", "núi"], "taken_at": "2023-12-31T23:00:00", "place": "Hà Nội",
              "gps": {"lat": 21.0, "lon": 105.8}},
        "b": {"year": 2022, "tags": ["phố"], "taken_at": "2024:06:01 08:00:00", "camera": "Canon",
              "gps": {"lat": 10.8, "lon": 106.7}},
        "c": {"tags": [{"label": "biển", "score": 0.9}, {"label": "hoàng hôn", "score": 0.7}],
              "taken_at": "2024-03-05T18:30:00+07:00"},
    }
    condition = filters.parse_condition(condition)
    assert {key for key, record in records.items() if condition.matches(record)} == expected


@pytest.mark.parametrize("text", ["year", "=2020", "year>abc", "taken_at<yesterday"])
def test_unreadable_conditions_are_refused(text):
    with pytest.raises(filters.FilterError):
        filters.parse_condition(text)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("exact_scan", [True, False])
def test_where_returns_k_matching_hits_when_5_of_300_match_on_every_kind(tmp_path, kind, exact_scan, monkeypatch):
    if not exact_scan:  # through FAISS's IDSelector, and the exact fallback where it comes back short
        monkeypatch.setattr(filters, "EXACT_SCAN_LIMIT", 0)
    index = tmp_path / "idx.faiss"
    records = [{"id": f"r{i}", "camera": "leica" if i % 60 == 7 else "phone", "caption": f"ảnh số {i}"}
               for i in range(300)]
    index_records(with_vectors(records), index, kind=kind)
    queries = unit_vectors(4, seed=9)
    with IndexReader(index) as reader:
        among = filters.select(reader, filters.parse_conditions(["camera=leica"]))
        assert len(among) == 5
        for hits in reader.search(queries, k=5, among=among.rows.keys()):
            assert sorted(h.id for h in hits) == sorted(among.ids)
        assert all(len(hits) == 3 for hits in reader.search(queries, k=3, among=among.rows.keys()))
        assert keyword_ids(index, "anh so", among=among.ids) and \
            set(keyword_ids(index, "anh so", among=among.ids)) == set(among.ids)


def test_where_picks_the_best_among_the_matching_records(tmp_path):
    index = tmp_path / "idx.faiss"
    vectors = unit_vectors(300)
    index_records([{"id": f"r{i}", "embedding": encode_vector(v), "embedding_model": "m", "even": i % 2 == 0}
                   for i, v in enumerate(vectors)], index)
    with IndexReader(index) as reader:
        among = filters.select(reader, filters.parse_conditions(["even=true"]))
        hits = reader.search(vectors[3:4], k=10, among=among.rows.keys())[0]
    scores = vectors[0::2] @ vectors[3]
    expected = [f"r{2 * i}" for i in np.argsort(-scores)[:10]]
    assert [h.id for h in hits] == expected


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(params=BACKENDS)
def sign_index(tmp_path, photos, siglip_dir, request):
    """Eight photos embedded with a random tiny model (it knows nothing); one has a sign's text on it."""
    embedded = run(["embed-images", str(photos), "--model", siglip_dir])
    assert embedded.exit_code == 0, embedded.stderr
    records = json_lines(embedded.stdout)
    sign = records[5]
    sign["ocr_text"] = "Cà phê sữa đá\n25.000đ"
    for i, record in enumerate(records):
        record["year"] = 2000 + i
    index = new_index(tmp_path, request.param)
    built = run(["index", "-o", str(index)], input="".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    assert built.exit_code == 0, built.stderr
    return index, sign["id"]


def test_hybrid_search_puts_a_signs_photo_in_the_top_3_even_with_a_model_that_knows_nothing(sign_index):
    index, sign = sign_index
    result = run(["search", "-i", str(index), "ca phe sua da", "-k", "5"])  # hybrid: the index holds texts
    assert result.exit_code == 0, result.stderr
    hits = json_lines(result.stdout)
    top = [h["id"] for h in hits[:3]]
    assert sign in top
    found = next(h for h in hits if h["id"] == sign)
    assert "keyword" in found["matched"]
    assert found["snippet"] == "[Cà phê sữa đá] 25.000đ"
    assert all("query_restored" in h for h in hits)
    assert any(h["matched"] == ["vector"] for h in hits)  # the vector channel was fused in


def test_keyword_search_loads_no_model(sign_index, monkeypatch):
    import mmtools.models

    def no_model(*args, **kwargs):
        raise AssertionError("keyword search loaded a model")

    monkeypatch.setattr(mmtools.models, "load_encoder", no_model)
    index, sign = sign_index
    result = run(["search", "-i", str(index), "--mode", "keyword", "Cà phê"])
    assert result.exit_code == 0, result.stderr
    hits = json_lines(result.stdout)
    assert [h["id"] for h in hits] == [sign] and hits[0]["matched"] == ["keyword"]
    assert "query_restored" not in hits[0]


def test_where_and_weights_on_the_command_line(sign_index):
    index, sign = sign_index
    result = run(["search", "-i", str(index), "ảnh", "--mode", "vector", "--where", "year>=2006", "-k", "5"])
    assert result.exit_code == 0, result.stderr
    hits = json_lines(result.stdout)
    assert len(hits) == 2 and all(h["year"] >= 2006 for h in hits) and "matched" not in hits[0]
    weighted = run(["search", "-i", str(index), "ca phe", "--weights", "0,1", "-k", "1"])
    assert json_lines(weighted.stdout)[0]["id"] == sign
    bad = run(["search", "-i", str(index), "x", "--where", "year>soon"])
    assert bad.exit_code == 2 and "--where" in bad.stderr
    none = run(["search", "-i", str(index), "x", "--where", "year>3000"])
    assert none.exit_code == 0 and none.stdout == "" and "no record" in none.stderr
    wrong = run(["search", "-i", str(index), "x", "--mode", "vector", "--weights", "1,2"])
    assert wrong.exit_code == 2


def test_keyword_search_of_an_index_without_texts_says_what_to_do(tmp_path, backend):
    index = new_index(tmp_path, backend)
    index_records(with_vectors([{"id": "a"}]), index)
    result = run(["search", "-i", str(index), "--mode", "keyword", "xe"])
    assert result.exit_code == 3 and "holds no texts" in result.stderr
