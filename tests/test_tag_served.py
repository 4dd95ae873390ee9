"""`mmtools tag --model TAGGER` through a warm server: straight to the socket, without building the typer app."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from mmtools.cli.fast import TAG_OPTIONS, parse_tag
from test_serve_cli import BIN, env, start_server, stop
from test_tag_e2e import untrained_text_tagger

HEAVY = ("torch", "numpy", "transformers", "typer", "rich", "PIL")


def test_fast_tag_parses_the_simple_forms_and_leaves_the_rest_to_typer(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    options, quiet = parse_tag(["-q", "tag", "--model=t", "-k", "3", "-f", "a", "--field", "b", "x.jsonl"])
    assert quiet and options["model"] == "t" and options["top_k"] == 3 and options["fields"] == ["a", "b"]
    assert options["inputs"] == ["x.jsonl"] and options["batch_size"] == 32
    for argv in (["tag", "--help"], ["tag", "-k", "0", "x"], ["tag", "--threshold", "2", "x"],
                 ["tag", "--device", "cpu", "x"], ["tag", "--format", "table", "x"], ["tag", "-0", "x"],
                 ["tag", "--no-cache=yes", "x"], ["tag", "-k"], ["tag", "--unknown", "x"], ["search", "x"]):
        assert parse_tag(argv) is None, argv
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert parse_tag(["tag", "x.jsonl"]) is None  # a terminal gets the table, drawn by the typer command
    assert parse_tag(["tag", "x.jsonl", "-o", "out.jsonl"]) is not None


def test_fast_tag_knows_exactly_the_tag_commands_options():
    import typer.main

    from mmtools.cli import app

    command = typer.main.get_command(app).commands["tag"]
    names = {name for param in command.params if param.param_type_name == "option"
             for name in param.opts + param.secondary_opts if name not in ("-h", "--help")}
    assert names == set(TAG_OPTIONS)


@pytest.mark.slow
def test_a_served_tag_call_loads_no_heavy_library_and_answers_as_alone(tagging_data, tmp_path):
    untrained_text_tagger(tagging_data, tmp_path / "tagger")
    from mmtools.tag.trained import load_tagger

    # Its ONNX export, made once beforehand: the first run alone announces it, which is not what is compared here.
    assert type(load_tagger(str(tmp_path / "tagger"), None, "auto")).__name__ == "OnnxTagger"
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "phòng có wifi"}\nnot json\n'
                                       '{"id": "b", "text": "thoáng_mát"}\n', encoding="utf-8")
    sock = tmp_path / "s.sock"
    server, line = start_server(tmp_path, sock, "-m", "tagger")
    try:
        assert "listening on" in line, line + server.stderr.read()
        probe = ("import sys, atexit\n"
                 "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(m for m in %r if m in sys.modules)"
                 " + '\\n'))\n"
                 "from mmtools.cli import main\nsys.argv = ['mmtools', 'tag', '--model', 'tagger', 'in.jsonl']\n"
                 "main()\n") % (HEAVY,)
        served = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env(MMTOOLS_SERVER=str(sock)),
                                capture_output=True, text=True, timeout=60)
        alone = subprocess.run([str(BIN / "mmtools"), "tag", "--model", "tagger", "in.jsonl"], cwd=tmp_path,
                               env=env(MMTOOLS_SERVER="off"), capture_output=True, text=True, timeout=120)
        assert served.returncode == alone.returncode == 1, served.stderr
        assert served.stderr.splitlines()[-1] == "LOADED "  # neither typer nor torch: the socket did it
        assert served.stderr.splitlines()[:-1] == alone.stderr.splitlines()  # "in.jsonl:2: not valid JSON"
        assert [orjson.loads(x)["id"] for x in served.stdout.splitlines()] == ["a", "b"]
        for mine, theirs in zip(served.stdout.splitlines(), alone.stdout.splitlines()):
            a, b = orjson.loads(mine), orjson.loads(theirs)
            assert [t["label"] for t in a["tags"]] == [t["label"] for t in b["tags"]]
            assert [t["score"] for t in a["tags"]] == pytest.approx([t["score"] for t in b["tags"]], abs=1e-4)
        # A usage error through the fast path reads as the typer command's.
        wrong = [subprocess.run([str(BIN / "mmtools"), "tag", "--model", "tagger", "--labels", "x.txt", "in.jsonl"],
                                cwd=tmp_path, env=env(MMTOOLS_SERVER=where), capture_output=True, text=True,
                                timeout=120) for where in (str(sock), "off")]
        assert wrong[0].returncode == wrong[1].returncode == 2 and wrong[0].stderr == wrong[1].stderr
    finally:
        stop(server)
