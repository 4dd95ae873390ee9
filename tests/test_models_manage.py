"""models list/pull/import/info/remove, imported names in every --model, the Hugging Face cache (a real
cache layout built locally), and offline manners with the network simulated unreachable (a closed local
port, or a patched socket): no real host is ever contacted."""

import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.errors import ModelError, UsageError
from mmtools.models import hub, resolve_model
from mmtools.models.imported import add_imported, imported_models

runner = CliRunner()
BIN = Path(sys.executable).parent
REPO_ID = "acme/tiny-siglip"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTOOLS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    return tmp_path / "home"


def run(args, input=None):
    return runner.invoke(app, args, input=input)


def jsonl(text):
    return [orjson.loads(line) for line in text.splitlines()]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fake_hub_cache(cache: Path, model_dir: str, repo_id: str = REPO_ID) -> Path:
    from mmtools.models.synthetic import install_in_hub_cache

    return install_in_hub_cache(model_dir, cache, repo_id)


def cli_env(tmp_path, **extra):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}
    return env


# ---------------------------------------------------------------------------------------- imported names


def test_import_list_info_remove_round_trip(siglip_dir, home):
    imported = run(["models", "import", siglip_dir, "--name", "tiny", "--json"])
    assert imported.exit_code == 0, imported.stderr
    assert jsonl(imported.stdout)[0]["location"] == str(Path(siglip_dir).resolve())
    assert (home / "models.json").exists()

    (listed,) = [r for r in jsonl(run(["models", "list"]).stdout) if r["name"] == "tiny"]
    assert listed["source"] == "imported" and listed["family"] == "siglip" and listed["dim"] == 32
    assert listed["size_bytes"] > 100_000

    info = jsonl(run(["models", "info", "tiny"]).stdout)[0]
    assert info["source"] == "imported" and info["dim"] == 32 and info["family"] == "siglip"
    assert info["text_rules"]["max_length"] == 64 and info["text_rules"]["lowercase"] is True
    assert info["fingerprint"].startswith("fp-") and len(info["fingerprint"]) == 19
    from mmtools.models.fingerprint import model_fingerprint
    from mmtools.models.hf_dual import SIGLIP_RULES

    assert info["fingerprint"] == model_fingerprint(siglip_dir, SIGLIP_RULES, "hf-dual-encoder")

    removed = run(["models", "remove", "tiny"])
    assert removed.exit_code == 0 and "left in place" in removed.stderr
    assert Path(siglip_dir, "config.json").exists()
    assert imported_models() == {}
    gone = run(["models", "info", "tiny"])
    assert gone.exit_code == 3 and "unknown model 'tiny'" in gone.stderr


def test_imported_name_works_as_model_for_embed_texts_and_search(siglip_dir, tmp_path, photos):
    assert run(["models", "import", siglip_dir, "--name", "tiny"]).exit_code == 0
    by_name = run(["embed-texts", "--lines", "--model", "tiny"], input="xe hơi\n")
    by_dir = run(["embed-texts", "--lines", "--model", siglip_dir], input="xe hơi\n")
    assert by_name.exit_code == 0, by_name.stderr
    assert by_name.stdout == by_dir.stdout  # same vector, same embedding_model: the name is the directory
    embedded = run(["embed-images", str(photos), "--model", "tiny"])
    index = tmp_path / "idx.faiss"
    assert run(["index", "-o", str(index)], input=embedded.stdout).exit_code == 0
    found = run(["search", "xe", "-k", "2", "--index", str(index), "--model", "tiny"])
    assert found.exit_code == 0, found.stderr
    assert len(jsonl(found.stdout)) == 2


def test_import_refuses_what_cannot_work(siglip_dir, clip_dir, tmp_path):
    cases = [
        (["models", "import", siglip_dir, "--name", "siglip2-base"], 2, "already an alias"),
        (["models", "import", siglip_dir, "--name", "a/b"], 2, "cannot be used"),
        (["models", "import", str(tmp_path / "nowhere"), "--name", "x"], 2, "does not exist"),
        (["models", "import", str(tmp_path), "--name", "x"], 3, "config.json"),
    ]
    for args, code, message in cases:
        result = run(args)
        assert result.exit_code == code and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert run(["models", "import", siglip_dir, "--name", "m"]).exit_code == 0
    again = run(["models", "import", clip_dir, "--name", "m"])
    assert again.exit_code == 2 and "--replace" in again.stderr
    assert run(["models", "import", clip_dir, "--name", "m", "--replace"]).exit_code == 0
    assert resolve_model("m").name == str(Path(clip_dir).resolve())


def test_a_moved_imported_directory_is_a_clear_error(siglip_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(siglip_dir, copy)
    add_imported("moving", copy)
    shutil.rmtree(copy)
    with pytest.raises(ModelError) as caught:
        resolve_model("moving")
    assert "no longer exists" in caught.value.message and "models remove moving" in caught.value.hint


def _import_many(prefix: str, directory: str) -> None:
    for i in range(15):
        add_imported(f"{prefix}{i}", directory)


def test_two_processes_importing_at_once_lose_nothing(siglip_dir, clip_dir):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_import_many, args=(p, d)) for p, d in (("a", siglip_dir), ("b", clip_dir))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert set(imported_models()) == {f"{p}{i}" for p in "ab" for i in range(15)}


def test_a_corrupt_registry_is_named(home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.json").write_text("{not json")
    result = run(["models", "list"])
    assert result.exit_code == 3 and "models.json" in result.stderr


# -------------------------------------------------------------------------------- the Hugging Face cache


def test_cached_hub_model_is_listed_described_and_removed_only_with_yes(siglip_dir, tmp_path):
    snapshot = fake_hub_cache(tmp_path / "hf-hub", siglip_dir)
    (listed,) = [r for r in jsonl(run(["models", "list"]).stdout) if r["name"] == REPO_ID]
    assert listed["source"] == "hub-cache" and listed["dim"] == 32 and listed["family"] == "siglip"
    assert listed["location"] == str(snapshot) and listed["size_bytes"] > 100_000

    refused = run(["models", "remove", REPO_ID])
    assert refused.exit_code == 2 and "--yes" in refused.stderr and snapshot.exists()
    removed = run(["models", "remove", REPO_ID, "--yes"])
    assert removed.exit_code == 0, removed.stderr
    assert not snapshot.exists()
    assert all(r["name"] != REPO_ID for r in jsonl(run(["models", "list"]).stdout))


@pytest.mark.slow
def test_cached_model_loads_with_the_hub_unreachable_and_info_reads_its_card(siglip_dir, tmp_path):
    snapshot = fake_hub_cache(tmp_path / "hf-hub", siglip_dir)
    Path(snapshot.parent.parent / "blobs" / "card").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    (snapshot / "README.md").symlink_to("../../blobs/card")
    env = cli_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
    env.pop("HF_HUB_OFFLINE", None)
    result = subprocess.run(["mmtools", "embed-texts", "--lines", "--model", REPO_ID], input="xe hơi\n",
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "exporting" not in line]  # a first use on a CPU
    assert said[0].startswith("mmtools embed-texts: 1 embedded, 0 skipped, ")  # nothing else said
    assert len(said) == 1 and orjson.loads(result.stdout)["embedding_model"] == REPO_ID
    info = subprocess.run(["mmtools", "models", "info", REPO_ID, "--json"], env=env, capture_output=True,
                          text=True, timeout=120)
    record = orjson.loads(info.stdout)
    assert record["licence"] == "apache-2.0" and record["downloaded"] and record["dim"] == 32


# ----------------------------------------------------------------------------------------- offline manners


def test_probe_reports_refused_and_silent_hosts_quickly(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert "connection refused" in hub.hub_unavailable_reason()

    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    reason = hub.hub_unavailable_reason(timeout=0.5)
    assert time.monotonic() - started < 2 and "no answer within 0.5 s" in reason
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE" in hub.hub_unavailable_reason()


def test_probe_goes_through_the_proxy(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    tried = []

    def refuse(target, timeout=None):
        tried.append(target)
        raise ConnectionRefusedError()

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert "through the proxy proxy.internal:3128" in hub.hub_unavailable_reason()
    assert tried == [("proxy.internal", 3128)]


@pytest.mark.slow
@pytest.mark.parametrize("command", [["embed-texts", "--lines", "--model", "acme/not-here"],
                                     ["models", "pull", "acme/not-here"]])
def test_offline_and_not_cached_fails_fast_with_one_clear_error(tmp_path, command):
    env = cli_env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf"))
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HUB_CACHE", None)
    started = time.monotonic()
    result = subprocess.run(["mmtools", *command], input="xe hơi\n", env=env, capture_output=True, text=True,
                            timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert "acme/not-here" in lines[0] and "cannot be reached: connection refused" in lines[0]
    assert "mmtools models pull acme/not-here" in lines[1] and "mmtools models import DIR" in lines[1]
    assert "Traceback" not in result.stderr and "Retry" not in result.stderr
    assert elapsed < 30  # the start-up of a Python process with transformers; the refusal itself is instant


def test_hub_disabled_says_so():
    from mmtools.models.hf_dual import _load

    with pytest.raises(ModelError) as caught:
        _load(resolve_model("acme/not-here"))  # conftest sets HF_HUB_OFFLINE=1
    assert "HF_HUB_OFFLINE" in caught.value.message and "models pull" in caught.value.hint


def test_pull_refuses_local_models_and_never_asks_for_pickles(siglip_dir, monkeypatch):
    from mmtools.models import manage

    with pytest.raises(UsageError):
        manage.pull_model(siglip_dir)
    assert not any(p.endswith((".bin", ".pt", ".pth", ".ckpt", ".onnx")) or p == "*" for p in manage.PULL_PATTERNS)


def _import_forever(directory: str) -> None:
    number = 0
    while True:
        add_imported(f"n{number % 50}", directory, replace=True)
        number += 1


@pytest.mark.slow
def test_killed_writers_never_leave_a_broken_registry(siglip_dir, home):
    """kill -9 a process that rewrites the registry in a loop, at ten moments: it always reads whole."""
    import random
    import signal

    context = multiprocessing.get_context("fork")
    add_imported("kept", siglip_dir)
    rng = random.Random(7)
    for _ in range(10):
        worker = context.Process(target=_import_forever, args=(siglip_dir,))
        worker.start()
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        models = imported_models()  # raises if the file were half-written
        assert "kept" in models and all(entry["path"] for entry in models.values())
    leftovers = [p.name for p in home.iterdir() if p.name not in ("models.json", "models.json.lock")]
    assert all(name.endswith(".tmp") for name in leftovers)  # a killed writer's temp file at most, never used


def test_a_failed_write_keeps_the_old_registry(siglip_dir, home, monkeypatch):
    add_imported("kept", siglip_dir)
    before = (home / "models.json").read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        add_imported("new", siglip_dir)
    assert (home / "models.json").read_bytes() == before
    assert sorted(p.name for p in home.iterdir()) == ["models.json", "models.json.lock"]
