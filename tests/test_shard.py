"""--shard I/N: disjoint parts that cover the input, independent of order; shard runs merge into one run."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.errors import UsageError
from mmtools.shard import Shard, parse_shard, shard_of, take_shard

runner = CliRunner()


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(min_size=0, max_size=30), max_size=80, unique=True), count=st.integers(1, 9))
def test_shards_are_disjoint_and_cover_the_input(ids, count):
    parts = [list(take_shard(ids, Shard(i, count), key=str)) for i in range(count)]
    assert sorted(item for part in parts for item in part) == sorted(ids)  # cover, and no item twice
    for part in parts:
        assert part == [item for item in ids if item in set(part)]  # input order kept


def test_a_shard_does_not_depend_on_input_order_or_on_other_items():
    ids = [f"photos/{i:05d}.jpg" for i in range(500)]
    shuffled = random.Random(1).sample(ids, len(ids))
    for i in range(4):
        assert set(take_shard(ids, Shard(i, 4), str)) == set(take_shard(shuffled, Shard(i, 4), str))
    assert {shard_of(x, 4) for x in ids} == {0, 1, 2, 3}
    assert shard_of("photos/00001.jpg", 4) == shard_of("photos/00001.jpg", 4)
    assert shard_of("ảnh/mèo.jpg", 7) == 5  # fixed forever: shards started on other machines must agree


@pytest.mark.parametrize("spec, expected", [("0/4", Shard(0, 4)), ("3/4", Shard(3, 4)), (" 0/1 ", Shard(0, 1))])
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["4/4", "1", "a/b", "-1/4", "1/0", "1/4/5", ""])
def test_bad_shards_are_usage_errors(spec):
    with pytest.raises(UsageError):
        parse_shard(spec)


def _records(text):
    return {record["id"]: record for record in map(orjson.loads, text.splitlines())}


def test_embed_texts_shards_together_equal_one_run(tmp_path, siglip_dir):
    source = tmp_path / "captions.jsonl"
    source.write_text("".join(orjson.dumps({"id": f"c{i}", "captions": [f"ảnh số {i}", f"con mèo {i}"]}).decode()
                              + "\n" for i in range(20)))
    args = ["embed-texts", str(source), "--field", "captions", "--model", siglip_dir]
    whole = runner.invoke(app, args)
    assert whole.exit_code == 0, whole.stderr
    parts = [runner.invoke(app, [*args, "--shard", f"{i}/3"]) for i in range(3)]
    assert all(part.exit_code == 0 for part in parts)
    ids = [set(_records(part.stdout)) for part in parts]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    merged = {k: v for part in parts for k, v in _records(part.stdout).items()}
    expected = _records(whole.stdout)
    assert merged.keys() == expected.keys() and len(expected) == 40
    for key, record in expected.items():  # vectors may differ in the last bit (other batch neighbours)
        assert {**merged[key], "embedding": None} == {**record, "embedding": None}


def test_embed_images_shards_together_equal_one_run(photos, siglip_dir):
    args = ["embed-images", str(photos), "--model", siglip_dir]
    whole = _records(runner.invoke(app, args).stdout)
    parts = [_records(runner.invoke(app, [*args, "--shard", f"{i}/2"]).stdout) for i in range(2)]
    assert not parts[0].keys() & parts[1].keys()
    assert {**parts[0], **parts[1]}.keys() == whole.keys() and len(whole) == 8


def test_a_bad_shard_option_is_a_usage_error(siglip_dir, tmp_path):
    result = runner.invoke(app, ["embed-texts", "--lines", str(tmp_path), "--shard", "2/2", "--model", siglip_dir])
    assert result.exit_code == 2 and "--shard" in result.stderr
