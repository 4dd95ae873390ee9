"""Keyword search for a query typed without accents ranks the restored meaning first: "bong chay" finds the
photos captioned "bóng chày" before those whose captions hold "bóng chạy" (a word that folds the same)."""

import numpy as np
import orjson
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.index import index_records
from mmtools.index.backends import open_reader
from mmtools.records import encode_vector

runner = CliRunner()

BASEBALL = ["Cầu thủ bóng chày đang vung gậy trên sân .", "Một trận đấu bóng chày đông khán giả .",
            "Người bắt bóng đeo găng tay bóng chày .", "Cậu bé cầm gậy bóng chày trong công viên .",
            "Đội bóng chày chụp ảnh cùng nhau .", "Trọng tài đứng sau người bắt bóng trong trận bóng chày ."]
# Short captions, so BM25 alone would rank them first: the words fold like "bong chay" but mean "ball runs".
RUNNING = ["Quả bóng chạy lăn .", "Bóng chạy ra sân .", "Chó đuổi bóng chạy ."]


def records():
    texts = BASEBALL + RUNNING + ["Con mèo ngủ trên ghế .", "Xe hơi màu đỏ ."]
    vectors = np.random.default_rng(0).standard_normal((len(texts), 8)).astype("float32")
    return [{"id": f"r{i}", "caption": text, "embedding": encode_vector(v), "embedding_model": "m"}
            for i, (text, v) in enumerate(zip(texts, vectors))]


def test_unaccented_keyword_query_finds_the_restored_meaning_first(tmp_path):
    index = tmp_path / "idx.faiss"
    index_records(records(), index)
    baseball = {f"r{i}" for i in range(len(BASEBALL))}
    running = {f"r{len(BASEBALL) + i}" for i in range(len(RUNNING))}
    with open_reader(index) as reader:
        accented = [hit.id for hit in reader.keyword_search("bóng chày", len(baseball))]
        typed = [hit.id for hit in reader.keyword_search("bong chay", len(baseball))]
        everything = [hit.id for hit in reader.keyword_search("bong chay", 100)]
        other = [hit.id for hit in reader.keyword_search("bong chạy", 100)]  # typed with an accent: as typed
    assert set(accented) == baseball
    assert set(typed) == baseball  # exactly the photos the accented query finds
    assert set(everything[len(baseball):]) == running  # the fold-alikes still count, after them
    assert set(other[:len(running)]) == running
    found = runner.invoke(app, ["search", "-i", str(index), "--mode", "keyword", "bong chay",
                                "-k", str(len(baseball))], catch_exceptions=False)
    assert found.exit_code == 0, found.stderr
    assert {orjson.loads(line)["id"] for line in found.stdout.splitlines()} == baseball
