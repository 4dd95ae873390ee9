"""Milvus writes are all or nothing (issue 25): an update is staged in a collection of its own and the alias
switches to it when it is complete, so kill -9 at any call leaves the old collection or the new one whole,
on Milvus Lite and on a real Milvus server process. The real server (PyPI ``milvus`` 2.3.5, which predates
BM25) is also stopped and restarted in the middle of a write.

The server runs from its own virtual environment, ``.milvus-venv`` at the repository root (or the one named
by MMTOOLS_TEST_MILVUS_VENV), made with
``python -m venv .milvus-venv && .milvus-venv/bin/pip install milvus==2.3.5 "pymilvus<2.5" "setuptools<70"``
(it pins an old pymilvus, so it cannot share the project's environment); without it those tests skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from mmtools.index import index_records  # noqa: E402
from mmtools.index.backends import open_reader  # noqa: E402

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))
from states import COUNT, generation_records, generation_vectors  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Every port is kept for a restart: the server's embedded etcd remembers the ports it was started with.
SERVER_SCRIPT = """
import json, os, signal, socket, sys, time
import milvus
from milvus import default_server

def try_bind_port(self, port):  # as milvus does, but with SO_REUSEADDR: a restart meets TIME_WAIT sockets
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None

milvus.MilvusServerConfig.try_bind_port = try_bind_port
default_server.set_base_dir(sys.argv[1])
ports = os.path.join(sys.argv[1], "mmtools-test-ports.json")
if os.path.exists(ports):
    default_server.config.update(**json.load(open(ports)))
else:
    default_server.config.update(proxy_port=int(sys.argv[2]))
default_server.start()
items = default_server.config.configurable_items
json.dump({k: v[1] for k, v in items.items() if k.endswith("_port")}, open(ports, "w"))
print("ready", flush=True)
def stop(*_):
    default_server.stop()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(1)
"""
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def generation_of(location):
    """'old' or 'new' when the collection is wholly one write; fails the test on any mixture."""
    with open_reader(location) as reader:
        assert reader.info.count == COUNT, f"{reader.info.count} records, not {COUNT}"
        generations = {reader.get(f"r{i}")["generation"] for i in range(COUNT)}
        assert len(generations) == 1, f"records from two writes: {generations}"
        generation = generations.pop()
        hits = reader.search(generation_vectors(generation)[:20], k=1)
        assert [h[0].id for h in hits] == [f"r{i}" for i in range(20)], "vectors of another write"
        return generation


def kill_after_every_call(location, steps=range(1, 40)):
    """The update of milvus_crash_writer.py killed after its 1st, 2nd... change on the server (or after each
    of ``steps``); after each kill the collection is wholly old or wholly new, and the next write completes
    it."""
    seen = []
    for step in [*steps, 1000]:
        run = subprocess.run([sys.executable, str(HELPERS / "milvus_crash_writer.py"), location, "new", str(step)],
                             env=env(), capture_output=True, text=True, timeout=300)
        if run.returncode == 0:
            assert generation_of(location) == "new"
            return seen
        assert run.returncode == -9, run.stderr
        seen.append((run.stdout.split()[-1], generation_of(location)))
        if seen[-1][1] == "new":
            index_records(generation_records("old"), location, lock_timeout=60)  # back to old for the next
    pytest.fail("the update never finished")


def test_kill_9_during_a_milvus_lite_update_leaves_the_old_or_the_new_collection_whole(tmp_path):
    location = f"milvus-lite://{tmp_path / 'lite.db'}/photos"
    index_records(generation_records("old"), location)
    seen = kill_after_every_call(location)
    assert ("upsert", "old") in seen, seen  # killed with the new records half written: the old stand
    assert any(generation == "new" for _, generation in seen), seen  # killed after the switch: the new stand
    with open_reader(location) as reader:
        pass
    import pymilvus

    client = pymilvus.MilvusClient(str(tmp_path / "lite.db"))
    try:
        assert len(client.list_collections()) == 1, "collections a killed writer left were not swept"
    finally:
        client.close()


# ------------------------------------------------------------------------------------- a real server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A standalone Milvus 2.3.5 (PyPI ``milvus``) in a subprocess of its own virtual environment."""

    def __init__(self, python: Path, base: Path):
        self.python, self.base, self.port = python, base, _free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.base.parent / f"{self.base.name}-server.log", "a")
        self.process = subprocess.Popen([str(self.python), "-c", SERVER_SCRIPT, str(self.base), str(self.port)],
                                        stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        line = self.process.stdout.readline()  # blocks until the server is up (a minute or two)
        if line.strip() != "ready":
            self.stop()
            said = Path(log.name).read_text()[-500:]
            pytest.skip(f"the Milvus server from .milvus-venv did not start: {said}")
        import pymilvus

        deadline = time.monotonic() + 180
        while True:  # a restarted server says it started a little before it answers
            try:
                client = pymilvus.MilvusClient(f"http://127.0.0.1:{self.port}", timeout=10)
                client.list_collections()
                client.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def location(self, name: str) -> str:
        return f"milvus://127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    venv = Path(os.environ.get("MMTOOLS_TEST_MILVUS_VENV", REPO / ".milvus-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"no Milvus server environment at {venv} (python -m venv .milvus-venv && .milvus-venv/bin/pip "
                    "install milvus==2.3.5 'pymilvus<2.5' 'setuptools<70')")
    check = subprocess.run([str(python), "-c", "import milvus"], capture_output=True)
    if check.returncode != 0:
        pytest.skip(f"{venv} has no `milvus` package (pip install milvus==2.3.5)")
    running = Server(python, tmp_path_factory.mktemp("milvus-server"))
    running.start()
    yield running
    running.stop()


def test_an_older_server_without_bm25_is_written_and_searched_by_vector(server):
    location = server.location("older")
    summary = index_records(generation_records("old"), location)
    assert summary.info.count == COUNT
    assert any("keeps no full text" in note for note in summary.notes), summary.notes
    assert generation_of(location) == "old"


def test_kill_9_during_an_update_on_a_real_server_leaves_the_old_or_the_new_collection_whole(server):
    location = server.location("killed")
    index_records(generation_records("old"), location)
    # A server round costs seconds: kill after the staged collection's first upsert and right after the
    # switch (the calls: create the staged collection, upsert, upsert, switch the alias, drop the old one).
    seen = kill_after_every_call(location, steps=(2, 4))
    assert ("upsert", "old") in seen, seen
    assert any(generation == "new" for _, generation in seen), seen


def test_a_server_stopped_and_restarted_mid_write_leaves_the_old_collection_whole(server):
    location = server.location("restarted")
    index_records(generation_records("old"), location)
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pymilvus\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from states import generation_records\n"
        "from mmtools.cli import main\n"
        "slow = pymilvus.MilvusClient.upsert\n"
        "def upsert(*a, **k):\n"
        "    print('upsert', flush=True); time.sleep(2); return slow(*a, **k)\n"
        "pymilvus.MilvusClient.upsert = upsert\n"
        "import json, tempfile\n"
        "f = tempfile.NamedTemporaryFile('w', suffix='.jsonl', delete=False)\n"
        "f.write(''.join(json.dumps(r) + '\\n' for r in generation_records('new'))); f.close()\n"
        "sys.argv = ['mmtools', 'index', '-o', sys.argv[1], f.name]\n"
        "main()\n"), location, str(HELPERS)], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "upsert"  # the new records are being written...
        server.stop()  # ... when the server goes away
        _out, err = writer.communicate(timeout=300)
        assert writer.returncode == 3, err
        assert "internal error" not in err and "Traceback" not in err
        assert "milvus" in err.lower() or "127.0.0.1" in err, err
    finally:
        if writer.poll() is None:
            writer.kill()
        if server.process is None:
            server.start()
    assert generation_of(location) == "old"
    index_records(generation_records("new"), location)
    assert generation_of(location) == "new"
