"""The CLI in-process (typer's CliRunner keeps stdout and stderr apart)."""

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app

runner = CliRunner()


def run(args, input=None, env=None):
    return runner.invoke(app, args, input=input, env=env, catch_exceptions=False)


def json_lines(text):
    return [orjson.loads(line) for line in text.splitlines()]  # fails if stdout holds anything but JSONL


@pytest.fixture
def indexed(tmp_path, photos, siglip_dir):
    embedded = run(["embed-images", str(photos), "--model", siglip_dir])
    assert embedded.exit_code == 0, embedded.stderr
    index = tmp_path / "idx.faiss"
    built = run(["index", "-o", str(index)], input=embedded.stdout)
    assert built.exit_code == 0, built.stderr
    return index, json_lines(embedded.stdout)


def test_embed_images_writes_only_jsonl_and_names_each_bad_input(photos, broken_files, siglip_dir, tmp_path):
    result = run(["embed-images", str(photos), *map(str, broken_files.values()), str(tmp_path / "gone.jpg"),
                  "--model", siglip_dir])
    assert result.exit_code == 1
    records = json_lines(result.stdout)
    assert len(records) == 8
    *errors, summary = result.stderr.strip().splitlines()
    # the first run in a fresh cache also announces the model's ONNX export (one line, not an error)
    errors = [line for line in errors if "to ONNX" not in line]
    assert len(errors) == 4 and summary.startswith("mmtools embed-images: 8 embedded, 4 skipped, ")
    assert all(line.startswith("mmtools embed-images: ") for line in errors)
    for path in [*broken_files.values(), tmp_path / "gone.jpg"]:
        assert any(str(path) in line for line in errors)
    assert "Traceback" not in result.stderr


def test_embedding_format_list_is_readable(photos, siglip_dir):
    result = run(["embed-images", str(sorted(photos.glob("*.jpg"))[0]), "--model", siglip_dir,
                  "--embedding-format", "list"])
    (record,) = json_lines(result.stdout)
    assert isinstance(record["embedding"], list) and len(record["embedding"]) == 32


def test_search_by_image_finds_that_image_first(indexed, photos):
    index, embedded = indexed
    target = embedded[3]["path"]
    result = run(["search", "--image", target, "-k", "3", "--index", str(index)])
    assert result.exit_code == 0, result.stderr
    hits = json_lines(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["id"] == target and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert hits[0]["query_id"] == target and hits[0]["path"] == target


def test_search_text_queries_from_arguments_stdin_lines_and_records(indexed):
    index, _ = indexed
    by_argument = json_lines(run(["search", "xe hơi màu đỏ", "con mèo", "-k", "2", "-i", str(index)]).stdout)
    assert [(h["query_id"], h["rank"]) for h in by_argument] == [("q1", 1), ("q1", 2), ("q2", 1), ("q2", 2)]
    by_lines = json_lines(run(["search", "--lines", "-k", "2", "-i", str(index)],
                              input="xe hơi màu đỏ\ncon mèo\n").stdout)
    assert [h["id"] for h in by_lines] == [h["id"] for h in by_argument]
    by_records = json_lines(run(["search", "-k", "2", "-i", str(index)],
                                input='{"id": "a", "text": "xe hơi màu đỏ"}\n').stdout)
    assert [h["query_id"] for h in by_records] == ["a", "a"]
    assert [h["score"] for h in by_records] == [h["score"] for h in by_argument[:2]]


def test_search_with_ready_embeddings_and_min_score(indexed):
    index, embedded = indexed
    query = orjson.dumps(embedded[0]).decode()
    hits = json_lines(run(["search", "-i", str(index), "--min-score", "0.999"], input=query).stdout)
    assert [h["id"] for h in hits] == [embedded[0]["id"]]


def test_the_index_model_is_used_and_another_model_is_refused(indexed, clip_dir):
    index, _ = indexed
    result = run(["search", "xe hơi", "-i", str(index), "--model", clip_dir])
    assert result.exit_code == 3
    assert "was built with model" in result.stderr and result.stdout == ""
    wrong_vectors = run(["embed-texts", "--lines", "--model", clip_dir], input="xe hơi\n").stdout
    mixed = run(["index", "-o", str(index)], input=wrong_vectors)
    assert mixed.exit_code == 1 and "holds model" in mixed.stderr


def test_search_without_an_index_says_how_to_build_one(tmp_path):
    result = run(["search", "xe hơi", "-i", str(tmp_path / "idx.faiss")])
    assert result.exit_code == 3
    assert "no index at" in result.stderr and "mmtools index" in result.stderr
    assert "Traceback" not in result.stderr


def test_embed_texts_records_and_lines(siglip_dir):
    records = '{"id": "c1", "caption": "Xe hơi màu đỏ", "lang": "vi"}\nnot json\n{"id": "c2"}\n'
    result = run(["embed-texts", "--field", "caption", "--model", siglip_dir], input=records)
    assert result.exit_code == 1
    (record,) = json_lines(result.stdout)
    assert (record["id"], record["lang"], record["embedding_kind"]) == ("c1", "vi", "text")
    assert "<stdin>:2" in result.stderr and "c2" in result.stderr
    lines = run(["embed-texts", "--lines", "--model", siglip_dir], input="xe hơi\n\ncon mèo\n")
    assert lines.exit_code == 0
    assert [r["text"] for r in json_lines(lines.stdout)] == ["xe hơi", "con mèo"]


def test_output_file_is_written_atomically(siglip_dir, tmp_path):
    out = tmp_path / "vectors.jsonl"
    result = run(["embed-texts", "--lines", "--model", siglip_dir, "-o", str(out)], input="xe hơi\n")
    assert result.exit_code == 0 and result.stdout == ""
    assert len(json_lines(out.read_text())) == 1


def test_index_info_and_remove(indexed):
    index, embedded = indexed
    removed = run(["index", "-o", str(index), "--remove", embedded[0]["id"]], input="")
    assert removed.exit_code == 0, removed.stderr
    info = orjson.loads(run(["index", "--info", "-o", str(index)]).stdout)
    assert (info["count"], info["dim"], info["kind"]) == (7, 32, "flat")


def test_unknown_model_is_a_fatal_error_with_a_hint():
    result = run(["embed-texts", "--lines", "--model", "no-such-alias"], input="xe\n")
    assert result.exit_code == 3
    assert "unknown model" in result.stderr and "aliases" in result.stderr


def test_usage_errors_exit_2():
    assert run(["search", "-k", "0", "x"]).exit_code == 2
    assert run(["index", "--kind", "ball"], input="").exit_code == 2


def test_tag_train_and_eval_are_real_commands_now():
    result = run(["tag", "-"], input="{}\n")
    assert result.exit_code == 2 and "--labels" in result.stderr  # zero-shot needs a label list
    assert run(["train", "tagger", "--help"]).exit_code == 0
    assert run(["eval", "tagging", "--help"]).exit_code == 0


def test_help_lists_all_eight_commands():
    result = run(["--help"])
    assert result.exit_code == 0
    for command in ["segment", "embed-images", "embed-texts", "index", "search", "tag", "train", "eval"]:
        assert command in result.stdout


def test_search_ignores_a_global_default_model(indexed, clip_dir):
    index, _ = indexed
    result = run(["search", "xe hơi", "-k", "1", "-i", str(index)], env={"MMTOOLS_MODEL": clip_dir})
    assert result.exit_code == 0, result.stderr
    assert len(json_lines(result.stdout)) == 1


def test_index_params_are_checked():
    result = run(["index", "--param", "bogus=3"], input="")
    assert result.exit_code == 2 and "unknown parameter" in result.stderr
