"""`mmtools serve` as users run it: a real process, `mmtools search` using it unawares, signals and sockets."""

from __future__ import annotations

import os
import signal
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HEAVY = ("torch", "numpy", "faiss", "transformers")


def env(**extra):
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **extra}


def run(command, cwd, **extra):
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env(**extra),
                          capture_output=True, text=True, timeout=240)


def start_server(cwd, sock, *args):
    process = subprocess.Popen([str(BIN / "mmtools"), "serve", "--socket", str(sock), *args], cwd=cwd,
                               env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()  # "mmtools serve: listening on ..." once warm, or an error
    return process, line


def stop(process):
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=30)


@pytest.fixture(scope="module")
def library(tmp_path_factory, siglip_dir):
    from PIL import Image

    work = tmp_path_factory.mktemp("library")
    (work / "photos").mkdir()
    for i in range(6):
        Image.new("RGB", (40 + 6 * i, 36), (40 * i, 200 - 30 * i, 60)).save(work / "photos" / f"p{i}.jpg")
    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.index import index_records
    from mmtools.models import load_encoder

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)  # records hold relative paths, as `mmtools embed-images photos/` writes them
        index_records(embed_images(discover_images(["photos"]), load_encoder(siglip_dir, "cpu")), "idx.faiss")
    return work


@pytest.fixture(scope="module")
def server(library, tmp_path_factory):
    sock = tmp_path_factory.mktemp("run") / "s.sock"
    process, line = start_server(library, sock, "--index", "idx.faiss")
    assert "listening on" in line, line + process.stderr.read()
    yield sock
    stop(process)


def test_search_uses_the_server_and_answers_as_it_would_alone(library, server, siglip_dir):
    from mmtools.index import IndexReader
    from mmtools.models import load_encoder
    from mmtools.search import Query, search

    (library / "queries.jsonl").write_text('{"text": "xe hơi"}\nnot json\n{"path": "photos/p3.jpg"}\n')
    alone = run("mmtools search -k 2 < queries.jsonl", library, MMTOOLS_SERVER="off")
    served = run("mmtools search -k 2 < queries.jsonl", library, MMTOOLS_SERVER=str(server))
    assert served.returncode == alone.returncode == 1 and "<stdin>:2: not valid JSON" in served.stderr
    assert served.stderr == alone.stderr
    assert [orjson.loads(x)["id"] for x in served.stdout.splitlines()] == \
        [orjson.loads(x)["id"] for x in alone.stdout.splitlines()]
    assert [orjson.loads(x)["query"] for x in served.stdout.splitlines()] == ["xe hơi"] * 2 + ["photos/p3.jpg"] * 2

    served = run('mmtools search "xe hơi màu đỏ" -k 3 --image photos/p1.jpg', library, MMTOOLS_SERVER=str(server))
    assert served.returncode == 0 and served.stderr == ""
    with IndexReader(library / "idx.faiss") as reader:
        queries = [Query("q1", text="xe hơi màu đỏ"), Query("photos/p1.jpg", image=str(library / "photos/p1.jpg"))]
        expected = list(search(reader, queries, lambda: load_encoder(siglip_dir, "cpu"), k=3))
    got = [orjson.loads(x) for x in served.stdout.splitlines()]
    assert [(h["query_id"], h["id"]) for h in got] == [(h["query_id"], h["id"]) for h in expected]
    assert got[-1]["query"] == "photos/p1.jpg" and got[-3]["id"].endswith("/photos/p1.jpg")
    lines = run("printf 'xe\\nnhà\\n' | mmtools search --lines -k 2", library, MMTOOLS_SERVER=str(server))
    assert [orjson.loads(x)["query_id"] for x in lines.stdout.splitlines()] == ["q1", "q1", "q2", "q2"]


def test_search_output_file_and_errors_through_the_server(library, server):
    written = run("mmtools search xe -k 2 -o hits.jsonl", library, MMTOOLS_SERVER=str(server))
    assert written.returncode == 0 and written.stdout == ""
    assert len((library / "hits.jsonl").read_text().splitlines()) == 2
    missing = run("mmtools search xe --index nowhere.faiss", library, MMTOOLS_SERVER=str(server))
    assert missing.returncode == 3 and "error: no index at" in missing.stderr and "hint:" in missing.stderr


def test_embed_texts_uses_the_server(library, server, siglip_dir):
    from mmtools.embed import embed_texts, text_items_from_records
    from mmtools.models import load_encoder

    (library / "texts.jsonl").write_text('{"id": "a", "text": "con mèo"}\n{"id": "b", "text": ""}\n')
    served = run("mmtools embed-texts texts.jsonl", library, MMTOOLS_SERVER=str(server), MMTOOLS_MODEL=siglip_dir)
    said = served.stderr.splitlines()
    assert served.returncode == 1 and said[0] == "mmtools embed-texts: b: text is empty, skipped"
    assert len(said) == 2 and re.fullmatch(r"mmtools embed-texts: 1 embedded, 1 skipped, [\d.]+ s", said[1])
    expected = list(embed_texts(text_items_from_records([{"id": "a", "text": "con mèo"}]),
                                load_encoder(siglip_dir, "cpu")))
    got = [orjson.loads(x) for x in served.stdout.splitlines()]
    assert [{**r, "embedding": None} for r in got] == [{**r, "embedding": None} for r in expected]


def test_the_client_path_imports_no_heavy_library(library, server):
    probe = ("import sys, atexit\n"
             "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(sorted(m for m in %r if m in sys.modules))"
             " + '\\n'))\n"
             "from mmtools.cli import main\nsys.argv = ['mmtools', 'search', 'xe', '-k', '1']\nmain()\n") % (HEAVY,)
    result = subprocess.run([sys.executable, "-c", probe], cwd=library, env=env(MMTOOLS_SERVER=str(server)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1  # it did search...
    assert "LOADED \n" in result.stderr  # ...and loaded none of them
    typer_path = subprocess.run([sys.executable, "-c", probe.replace("'-k', '1'", "'--top-k=1', '--lines'")
                                 .replace("'xe', ", "")],
                                cwd=library, env=env(MMTOOLS_SERVER=str(server)), input="xe\n",
                                capture_output=True, text=True, timeout=60)
    assert typer_path.returncode == 0 and "LOADED \n" in typer_path.stderr


def test_no_server_and_a_stale_socket_mean_in_process_work(library, tmp_path):
    stale = tmp_path / "stale.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(stale))
    listener.close()
    result = run("mmtools search xe -k 2", library, MMTOOLS_SERVER=str(stale))
    assert result.returncode == 0 and result.stderr == "" and len(result.stdout.splitlines()) == 2


def test_lifecycle_stale_socket_replaced_second_server_refused_sigterm_clean(library, tmp_path):
    sock = tmp_path / "life.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.close()  # a socket file left by a server that was killed
    first, line = start_server(library, sock, "--index", "idx.faiss")
    try:
        assert "listening on" in line, line + first.stderr.read()
        second = subprocess.run([str(BIN / "mmtools"), "serve", "--socket", str(sock)], cwd=library, env=env(),
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 3 and "already running" in second.stderr
        found = run("mmtools search xe -k 1", library, MMTOOLS_SERVER=str(sock))
        assert found.returncode == 0 and len(found.stdout.splitlines()) == 1
    finally:
        _out, err = stop(first)
    assert first.returncode == 0, err
    assert not sock.exists()


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_a_server_that_cannot_start_exits_naming_the_file_and_its_clients_do_not_hang(library, tmp_path, delay):
    sock = tmp_path / "broken.sock"
    started = time.monotonic()
    server = subprocess.Popen([str(BIN / "mmtools"), "serve", "--socket", str(sock), "-i", "nowhere.faiss"],
                              cwd=library, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)  # the client comes while the server is still starting (or has just failed)
    client = subprocess.Popen([str(BIN / "mmtools"), "search", "xe", "-k", "2", "--index", "idx.faiss"],
                              cwd=library, env=env(MMTOOLS_SERVER=str(sock)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        found, said = client.communicate(timeout=30)
        _out, err = server.communicate(timeout=30)
    finally:
        for process in (client, server):
            if process.poll() is None:
                process.kill()
    assert time.monotonic() - started < 30
    assert server.returncode != 0 and "nowhere.faiss" in err and "Traceback" not in err and "_Stop" not in err
    # The client worked alone (the server never answered it), or failed with a message: never a hang.
    assert client.returncode == 0 and len(found.splitlines()) == 2, said
    assert not sock.exists()
