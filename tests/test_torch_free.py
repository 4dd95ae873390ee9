"""The user install has no PyTorch: the main job runs on towers already in ONNX (the Transformers.js layout of
onnx-community repositories, or a `mmtools models export` directory), and what needs PyTorch says what to install.

The subprocesses here run with a sitecustomize that makes `import torch` fail and hides torch from transformers
(``find_spec("torch")`` is None), as on a machine where it was never installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.onnx_layout import write_transformers_js

MMTOOLS = str(Path(sys.executable).with_name("mmtools"))
BLOCKER = """import sys
for _name in ("torch", "torchvision", "torchaudio"):
    sys.modules[_name] = None  # `import torch` fails, and importlib.util.find_spec("torch") is None
"""


@pytest.fixture(scope="module")
def layout_dir(siglip_dir, tmp_path_factory) -> Path:
    return write_transformers_js(siglip_dir, tmp_path_factory.mktemp("onnx-community") / "siglip-tiny-ONNX")


@pytest.fixture
def no_torch(tmp_path) -> dict[str, str]:
    """An environment in which PyTorch cannot be imported."""
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1", "MMTOOLS_CACHE_DIR": str(tmp_path / "cache"), "MMTOOLS_HOME": str(tmp_path / "home")}
    env.pop("MMTOOLS_MODEL", None)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch" in probe.stderr  # the blocker works
    return env


def _sh(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = str(Path(MMTOOLS).parent)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, capture_output=True, text=True,
                          env={**env, "PATH": bin_dir + os.pathsep + env["PATH"]}, timeout=240)


@pytest.mark.slow
def test_the_main_job_runs_without_torch(layout_dir, no_torch, photos, tmp_path):
    env = {**no_torch, "MMTOOLS_MODEL": str(layout_dir)}
    job = _sh('mmtools embed-images photos/ | mmtools index -o idx.faiss && mmtools search -i idx.faiss '
              '"xe hơi màu đỏ" -k 3', env, tmp_path)
    assert job.returncode == 0, job.stderr
    hits = [json.loads(line) for line in job.stdout.splitlines()]
    assert len(hits) == 3 and all(hit["path"].startswith("photos/") for hit in hits)
    assert "Traceback" not in job.stderr and "PyTorch was not found" not in job.stderr  # transformers not even imported
    first = hits[0]["id"]
    more = _sh(f"mmtools similar -i idx.faiss {first} -k 2 && printf 'con mèo\\n' | mmtools embed-texts --lines",
               env, tmp_path)
    assert more.returncode == 0, more.stderr
    records = [json.loads(line) for line in more.stdout.splitlines()]
    assert len(records) == 3 and records[2]["text"] == "con mèo" and records[2]["embedding"]
    info = _sh(f"mmtools models info {layout_dir} --json && mmtools models list --json", env, tmp_path)
    assert info.returncode == 0, info.stderr
    described = json.loads(info.stdout.splitlines()[0])
    assert described["loader"] == "onnx-dual-encoder" and described["layout"] == "transformers.js"
    assert described["dim"] == 32 and described["fingerprint"].startswith("fp-")


def test_onnx_layout_vectors_are_the_pytorch_models_but_not_its_fingerprint(layout_dir, siglip_dir):
    """The towers give the PyTorch model's vectors (outputs taken by name, normalised, SigLIP's 64 pads, the
    processor's preprocessing), yet nothing proves they hold the same weights: their own fingerprint."""
    from mmtools.models import ModelCache

    torch_model = ModelCache().get(siglip_dir, "cpu", "torch")
    onnx_model = ModelCache().get(str(layout_dir), "cpu")
    assert type(onnx_model).__name__ == "OnnxEncoder" and onnx_model.dim == torch_model.dim == 32
    texts = ["Xe hơi màu đỏ", "con mèo đang ngủ trên ghế", "a red car parked in front of a house"]
    images = [Image.new("RGB", (48, 40), (200, 30, 30)), Image.new("RGB", (20, 64), (10, 90, 200))]
    for a, b in ((torch_model.encode_texts(texts), onnx_model.encode_texts(texts)),
                 (torch_model.encode_images(images), onnx_model.encode_images(images))):
        assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        assert (a * b).sum(1).min() > 0.9999
    assert onnx_model.fingerprint != torch_model.fingerprint


def test_a_models_export_directory_runs_without_torch_as_the_same_model(clip_dir, no_torch, tmp_path):
    """What `mmtools models export` writes was checked against PyTorch: copied to a machine without torch, it
    is the same model (the same fingerprint, the same vectors)."""
    import shutil

    from mmtools.models import ModelCache
    from mmtools.models.onnx_export import export_model

    torch_model = ModelCache().get(clip_dir, "cpu", "torch")
    export = export_model(torch_model)
    assert not export.refused
    copied = shutil.copytree(export.directory, tmp_path / "exported")
    done = _sh(f"printf 'xe hơi\\n' | mmtools embed-texts --lines --model {copied}", no_torch, tmp_path)
    assert done.returncode == 0, done.stderr
    from mmtools.records import EMBEDDING_FINGERPRINT, decode_vector

    record = json.loads(done.stdout)
    vector = decode_vector(record["embedding"])
    assert record[EMBEDDING_FINGERPRINT] == torch_model.fingerprint
    assert float(vector @ torch_model.encode_texts(["xe hơi"])[0]) > 0.9999


@pytest.mark.parametrize("command", [
    "mmtools train tagger -d data.jsonl -o run",
    "printf 'xe\\n' | mmtools embed-texts --lines --model {model}",
    "mmtools models export {model}",
    "mmtools caption --model {model} photo.jpg",
])
def test_what_needs_torch_says_what_to_install(command, siglip_dir, no_torch, tmp_path):
    (tmp_path / "data.jsonl").write_text('{"path": "photo.jpg", "tags": ["xe"]}\n', encoding="utf-8")
    Image.new("RGB", (32, 32)).save(tmp_path / "photo.jpg")
    done = _sh(command.format(model=siglip_dir), no_torch, tmp_path)
    assert done.returncode in (2, 3), done.stderr
    errors = [line for line in done.stderr.splitlines() if ": error: " in line]
    hints = [line for line in done.stderr.splitlines() if ": hint: " in line]
    assert len(errors) == 1 and "PyTorch" in errors[0] and "leaves out" in errors[0], done.stderr
    assert len(hints) == 1 and "scripts/install.sh --with-torch" in hints[0] and "mmtools[torch]" in hints[0]
    assert "Traceback" not in done.stderr


def test_without_torch_the_default_model_is_its_onnx_twin(monkeypatch):
    from mmtools.models import registry
    from mmtools.models.onnx_prebuilt import ONNX_FAMILY

    monkeypatch.delenv("MMTOOLS_MODEL", raising=False)
    monkeypatch.setattr("mmtools.models.runtime.torch_installed", lambda: True)
    assert registry.resolve_model(None).name == registry.DEFAULT_MODEL
    assert registry.resolve_model("siglip2-base").family == "hf-dual-encoder"
    monkeypatch.setattr("mmtools.models.runtime.torch_installed", lambda: False)
    for name in (None, "siglip2-base", registry.DEFAULT_MODEL):
        ref = registry.resolve_model(name)
        assert ref.name == registry.ONNX_TWINS[registry.DEFAULT_MODEL] and ref.family == ONNX_FAMILY
    assert registry.resolve_model("clip-b32").name == "Xenova/clip-vit-base-patch32"
    assert registry.resolve_model("siglip2-large").family == "hf-dual-encoder"  # no twin: stays (needs torch)
    assert registry.resolve_model("Xenova/clip-vit-base-patch32").family == ONNX_FAMILY


def test_an_onnx_repo_not_on_this_machine_fails_at_once_offline(no_torch, tmp_path):
    done = _sh("printf 'xe\\n' | mmtools embed-texts --lines --model siglip2-base", no_torch, tmp_path)
    assert done.returncode == 3
    assert "onnx-community/siglip2-base-patch16-224-ONNX is not in the local Hugging Face cache" in done.stderr


def test_preprocessing_read_from_the_saved_config_is_the_processors(siglip_dir, clip_dir):
    from transformers import AutoImageProcessor

    from mmtools.models.image_preprocess import FastImagePreprocessor

    for directory in (siglip_dir, clip_dir):
        config = json.loads((Path(directory) / "preprocessor_config.json").read_text(encoding="utf-8"))
        processor = AutoImageProcessor.from_pretrained(directory)
        assert FastImagePreprocessor.from_config(config) == FastImagePreprocessor.from_processor(processor)
    assert FastImagePreprocessor.from_config({"image_processor_type": "OwlViTImageProcessor", "size": 32,
                                              "image_mean": [0, 0, 0], "image_std": [1, 1, 1]}) is None


def test_a_directory_with_both_weights_and_onnx_towers_runs_on_what_is_installed(layout_dir, tmp_path, monkeypatch):
    import shutil

    from mmtools.models.onnx_prebuilt import ONNX_FAMILY
    from mmtools.models.registry import resolve_model

    both = shutil.copytree(layout_dir, tmp_path / "both")
    (both / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr("mmtools.models.runtime.torch_installed", lambda: True)
    assert resolve_model(str(both)).family == "hf-dual-encoder"  # the weights are the model: exported on first use
    assert resolve_model(str(layout_dir)).family == ONNX_FAMILY
    monkeypatch.setattr("mmtools.models.runtime.torch_installed", lambda: False)
    assert resolve_model(str(both)).family == ONNX_FAMILY


def test_an_index_built_with_pytorch_says_why_its_onnx_twin_cannot_query_it():
    from types import SimpleNamespace

    from mmtools.models.registry import DEFAULT_MODEL, ONNX_TWINS
    from mmtools.search import _mismatch

    error = _mismatch("idx.faiss", SimpleNamespace(model=DEFAULT_MODEL, fingerprint="fp-0123"), ONNX_TWINS[DEFAULT_MODEL],
                      "fp-4567")
    assert "ONNX conversion" in error.message and "--with-torch" in error.hint and "rebuild" in error.hint


def test_the_user_install_asks_for_no_torch_and_the_test_install_does():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements):
        return {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in requirements}

    user = names(project["dependencies"]) | names(extras["cpu"]) | names(extras["onnx"]) | names(extras["ocr"])
    assert not user & {"torch", "torchvision", "pytest", "hypothesis", "selenium", "pymilvus", "onnx"}
    assert "onnxruntime" in user
    for extra in ("torch", "dev", "gpu"):
        assert "torch" in names(extras[extra])
    script = (Path(__file__).resolve().parents[1] / "scripts" / "install.sh").read_text()
    assert 'extras="cpu,onnx,ocr${dev}"' in script and "--with-torch) with_torch=1" in script


@pytest.mark.slow
def test_the_warm_server_runs_without_torch(layout_dir, no_torch, photos, tmp_path):
    import signal

    env = {**no_torch, "MMTOOLS_MODEL": str(layout_dir)}
    built = _sh("mmtools embed-images photos/ | mmtools index -o idx.faiss", env, tmp_path)
    assert built.returncode == 0, built.stderr
    sock = tmp_path / "s.sock"
    server = subprocess.Popen([MMTOOLS, "serve", "--socket", str(sock), "--index", "idx.faiss"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        assert "listening on" in line, line + server.stderr.read()
        probe = ("import sys, atexit\n"
                 "atexit.register(lambda: sys.stderr.write(f'ORT {\"onnxruntime\" in sys.modules}\\n'))\n"
                 "from mmtools.cli import main\n"
                 "sys.argv = ['mmtools', 'search', '-i', 'idx.faiss', 'xe hơi', '-k', '2']\nmain()\n")
        served = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                                env={**env, "MMTOOLS_SERVER": str(sock)}, timeout=120)
        alone = _sh('mmtools search -i idx.faiss "xe hơi" -k 2', env, tmp_path)
        assert served.returncode == 0 and alone.returncode == 0, served.stderr + alone.stderr
        assert "ORT False" in served.stderr  # the server encoded the query: the client loaded no model
        assert [json.loads(x)["id"] for x in served.stdout.splitlines()] == \
            [json.loads(x)["id"] for x in alone.stdout.splitlines()]
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def test_the_default_model_without_torch_loads_its_twin_from_the_hub_cache(layout_dir, no_torch, tmp_path):
    """The user's path: no --model, no PyTorch, the default model's ONNX twin in the Hugging Face cache (here the
    tiny towers stand in for it, laid out as huggingface_hub caches a download)."""
    import shutil

    from mmtools.models.registry import DEFAULT_MODEL, ONNX_TWINS

    twin = ONNX_TWINS[DEFAULT_MODEL]
    repo = tmp_path / "hub" / ("models--" + twin.replace("/", "--"))
    shutil.copytree(layout_dir, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    env = {**no_torch, "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = _sh("printf 'xe hơi\\n' | mmtools embed-texts --lines && mmtools models info siglip2-base --json", env,
               tmp_path)
    assert done.returncode == 0, done.stderr
    record, info = (json.loads(line) for line in done.stdout.splitlines())
    assert record["embedding_model"] == twin and info["model"] == twin and info["aliases"] == ["siglip2-base"]
    assert info["licence"] == "Apache-2.0" and info["layout"] == "transformers.js"
    assert record["embedding_fingerprint"] == info["fingerprint"]


def test_zero_shot_tags_on_onnx_only_towers_say_what_they_lack(layout_dir, no_torch, tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "photo.jpg")
    (tmp_path / "labels.txt").write_text("xe hơi\ncon mèo\n", encoding="utf-8")
    done = _sh(f"mmtools tag --labels labels.txt photo.jpg --model {layout_dir}", no_torch, tmp_path)
    assert done.returncode == 3 and not done.stdout
    assert "logit scale and bias" in done.stderr and "--with-torch" in done.stderr and "Traceback" not in done.stderr
