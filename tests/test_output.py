"""Output formats: JSONL into pipes and files exactly as before, a table on a terminal (checked through a
real pseudo-terminal), bare paths for xargs, and NO_COLOR."""

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.cli.output import Column, OutputFormat, emit_records, format_cell, path_or_id
from mmtools.errors import UsageError
from mmtools.records import RecordWriter

runner = CliRunner()
BIN = Path(sys.executable).parent
RECORDS = [
    {"query_id": "q1", "query": "xe hơi", "rank": 1, "score": 0.912345, "path": "photos/a.jpg", "id": "a"},
    {"query_id": "q1", "query": "xe hơi", "rank": 2, "score": 0.5, "path": "photos/b c.jpg", "id": "b"},
    {"query_id": "q2", "query": "con mèo", "rank": 1, "score": 0.25, "id": "no-path"},
]
COLUMNS = [Column("rank", "rank", justify="right"), Column("score", "score", justify="right"),
           Column("path", path_or_id, wrap=True), Column("tags", "tags", optional=True)]


class Captured:
    def __init__(self, capsysbinary):
        self._capsys = capsysbinary

    def getvalue(self) -> bytes:
        return self._capsys.readouterr().out


@pytest.fixture
def capture(capsysbinary):
    """Standard output as bytes, the way commands write it (not a terminal)."""
    return Captured(capsysbinary)


def test_jsonl_is_byte_for_byte_what_the_record_writer_writes(capture):
    emit_records(iter(RECORDS), OutputFormat.auto, columns=COLUMNS)  # not a terminal: auto means JSONL
    expected = io.BytesIO()
    RecordWriter(expected).write_all(RECORDS)
    assert capture.getvalue() == expected.getvalue()


def test_paths_one_per_record_newline_or_nul(capture):
    emit_records(iter(RECORDS), OutputFormat.paths, columns=COLUMNS, print0=True)
    assert capture.getvalue() == b"photos/a.jpg\0photos/b c.jpg\0no-path\0"


def test_print0_without_paths_is_a_usage_error(capture):
    with pytest.raises(UsageError):
        emit_records(iter(RECORDS), OutputFormat.jsonl, columns=COLUMNS, print0=True)


def test_table_has_one_block_per_group_and_readable_cells(capture):
    count = emit_records(iter(RECORDS), OutputFormat.table, columns=COLUMNS, group_by="query")
    text = capture.getvalue().decode()
    assert count == 3
    assert text.index("xe hơi") < text.index("photos/a.jpg") < text.index("con mèo") < text.index("no-path")
    assert "0.912" in text and "0.912345" not in text
    assert "tags" not in text  # optional column, no record has tags
    assert "\x1b[" not in text  # no colour outside a terminal


def test_optional_column_appears_when_some_record_has_it(capture):
    tagged = [dict(RECORDS[0], tags=[{"label": "xe", "score": 0.8}, {"label": "phố", "score": 0.4}])]
    emit_records(iter(tagged), OutputFormat.table, columns=COLUMNS)
    assert "xe 0.800, phố 0.400" in capture.getvalue().decode()


def test_format_cell():
    assert format_cell(0.5) == "0.500" and format_cell(None) == "" and format_cell(["a", "b"]) == "a, b"
    assert format_cell({"label": "mèo"}) == "mèo" and format_cell(3) == "3"


def test_table_to_a_file_with_output(tmp_path):
    target = tmp_path / "hits.txt"
    emit_records(iter(RECORDS), OutputFormat.table, columns=COLUMNS, output=str(target))
    assert "photos/a.jpg" in target.read_text()


# --------------------------------------------------------------------------------- the search command


@pytest.fixture(scope="module")
def index(tmp_path_factory, siglip_dir):
    from PIL import Image

    work = tmp_path_factory.mktemp("search")
    (work / "photos").mkdir()
    for i, colour in enumerate(["red", "green", "blue", "yellow"]):
        Image.new("RGB", (40 + 10 * i, 40), colour).save(work / "photos" / f"{colour}.png")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MMTOOLS_MODEL": siglip_dir}
    built = subprocess.run("mmtools embed-images photos | mmtools index -o idx.faiss", shell=True, cwd=work,
                           env=env, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return work


def run_in_pty(args, cwd, **env):
    """Run mmtools with stdout on a pseudo-terminal (stderr separate); returns (exit code, stdout text)."""
    leader, follower = pty.openpty()
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "100",
                   "TERM": "xterm-256color", **env}
    for name in ("NO_COLOR", "FORCE_COLOR", "GITHUB_ACTIONS", "PY_COLORS"):
        if name not in env:
            environment.pop(name, None)
    process = subprocess.Popen(["mmtools", *args], cwd=cwd, env=environment, stdout=follower,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    process.wait(timeout=60)
    return process.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_search_prints_a_table_on_a_terminal_and_jsonl_into_a_pipe(index):
    code, shown = run_in_pty(["search", "xe hơi", "-k", "3"], index)
    assert code == 0
    assert "rank" in shown and "similarity" in shown and "photos/" in shown  # the column names its number
    assert '"query_id"' not in shown
    assert "\x1b[" in shown  # colour on a terminal...
    code, plain = run_in_pty(["search", "xe hơi", "-k", "3"], index, NO_COLOR="1")
    assert code == 0 and "\x1b[" not in plain and "photos/" in plain  # ...never with NO_COLOR

    piped = subprocess.run(["mmtools", "search", "xe hơi", "-k", "3"], cwd=index, capture_output=True,
                           env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}, timeout=60)
    hits = [orjson.loads(line) for line in piped.stdout.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]


def test_search_paths_print0_feeds_xargs(index):
    result = runner.invoke(app, ["search", "xe", "-k", "4", "--index", str(index / "idx.faiss"),
                                 "--format", "paths", "-0"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    paths = result.stdout_bytes.split(b"\0")
    # each path opens from where the search runs (relative under the working folder, else absolute)
    assert paths[-1] == b"" and sorted(os.path.realpath(p) for p in paths[:-1]) == sorted(
        os.path.realpath(index / "photos" / f"{c}.png").encode() for c in ["red", "green", "blue", "yellow"])


def test_search_print0_alone_is_a_usage_error(index):
    result = runner.invoke(app, ["search", "xe", "--index", str(index / "idx.faiss"), "-0"])
    assert result.exit_code == 2
    assert "--format paths" in result.stderr


@pytest.mark.slow
def test_tag_prints_a_table_on_a_terminal_and_jsonl_into_a_pipe(index, siglip_dir):
    (index / "labels.txt").write_text("xe hơi\nmèo\n", encoding="utf-8")
    code, shown = run_in_pty(["tag", "--labels", "labels.txt", "photos/", "-k", "1"], index, NO_COLOR="1",
                             MMTOOLS_MODEL=siglip_dir)
    assert code == 0 and "record" in shown and "tags" in shown and "photos/red.png" in shown
    assert '"tags"' not in shown
    piped = runner.invoke(app, ["tag", "--labels", str(index / "labels.txt"), str(index / "photos"), "-k", "1",
                                "--model", siglip_dir], catch_exceptions=False)
    records = [orjson.loads(line) for line in piped.stdout.splitlines()]
    assert len(records) == 4 and all(len(r["tags"]) == 1 for r in records)
