"""The runtime seam: PyTorch and ONNX Runtime behind one Encoder, the export's checks, int8 where it agrees,
atomic export caching, the cold path without torch, and the query-vector cache."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from mmtools.cli import app
from mmtools.models import ModelCache
from mmtools.models.onnx_export import PROBE_TEXTS, probe_images


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A private export cache, for tests that break or kill exports."""
    monkeypatch.setenv("MMTOOLS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_runtime_choices_are_the_cli_choices_and_are_checked(monkeypatch):
    from mmtools.cli.common import RuntimeChoice
    from mmtools.errors import UsageError
    from mmtools.models.runtime import RUNTIMES, available_cores, choose_runtime

    assert [c.value for c in RuntimeChoice] == list(RUNTIMES)
    monkeypatch.delenv("MMTOOLS_RUNTIME", raising=False)
    assert choose_runtime("auto", "cpu").name == "onnx"  # onnxruntime is installed here
    assert choose_runtime("torch", "cpu").name == "torch"
    assert choose_runtime("onnx-fp32", "cpu").name == "onnx-fp32"
    assert choose_runtime("auto", "cuda").name == "torch"  # GPUs stay with PyTorch
    monkeypatch.setenv("MMTOOLS_RUNTIME", "torch")
    assert choose_runtime(None, "cpu").name == "torch"
    with pytest.raises(UsageError, match="runs on the CPU"):
        choose_runtime("onnx", "cuda")
    with pytest.raises(UsageError, match="unknown runtime"):
        choose_runtime("tensorrt", "cpu")
    assert 1 <= available_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("arch", ["siglip-tiny", "clip-tiny"])
def test_onnx_gives_the_pytorch_vectors_under_the_same_fingerprint(model_dirs, arch):
    cache = ModelCache()
    torch_encoder = cache.get(model_dirs[arch], "cpu", "torch")
    onnx = cache.get(model_dirs[arch], "cpu", "onnx-fp32")
    assert (type(onnx).__name__, onnx.runtime, type(torch_encoder).__name__) == ("OnnxEncoder", "onnx",
                                                                                   "HFDualEncoder")
    assert onnx.fingerprint == torch_encoder.fingerprint and onnx.dim == torch_encoder.dim
    cut_onnx, cut_torch = [], []
    assert _cos(onnx.encode_texts(PROBE_TEXTS, cut_onnx.append),
                torch_encoder.encode_texts(PROBE_TEXTS, cut_torch.append)).min() >= 0.9999
    assert cut_onnx == cut_torch == [len(PROBE_TEXTS) - 1]  # the long probe is truncated by both
    images = probe_images(40, 4)
    assert _cos(onnx.encode_images(images), torch_encoder.encode_images(images)).min() >= 0.9999
    assert onnx.logit_scale_and_bias() == pytest.approx(torch_encoder.logit_scale_and_bias())


def test_a_trained_two_tower_model_exports(tmp_path):
    from mmtools.models.synthetic import build_random_tower
    from mmtools.train.retrieval import ModelOptions, save_untrained

    build_random_tower(tmp_path / "text", "phobert-text-tiny")
    build_random_tower(tmp_path / "image", "resnet-tiny")
    model = save_untrained(ModelOptions(text_encoder=str(tmp_path / "text"), image_encoder=str(tmp_path / "image"),
                                        projection_dim=16), tmp_path / "model")
    cache = ModelCache()
    onnx, torch_encoder = cache.get(str(model), "cpu", "onnx"), cache.get(str(model), "cpu", "torch")
    assert onnx.runtime == "onnx" and onnx.family == "two-tower" and onnx.fingerprint == torch_encoder.fingerprint
    texts = ["xe hơi màu đỏ", "con mèo nằm trên ghế", "một ngôi nhà"]
    assert _cos(onnx.encode_texts(texts), torch_encoder.encode_texts(texts)).min() >= 0.9999
    images = probe_images(40, 3)
    fp32 = cache.get(str(model), "cpu", "onnx-fp32")
    assert _cos(fp32.encode_images(images), torch_encoder.encode_images(images)).min() >= 0.9999
    assert _cos(onnx.encode_images(images), torch_encoder.encode_images(images)).min() >= 0.99  # int8 if agreed


def test_a_broken_graph_is_refused_and_pytorch_is_used(siglip_dir, own_cache, monkeypatch, caplog):
    import onnx as onnx_lib
    from onnx import numpy_helper

    from mmtools.models import onnx_export

    real = onnx_export.export_tower

    def broken(module, sample, names, axes, path):
        real(module, sample, names, axes, path)
        graph = onnx_lib.load(str(path))
        rng = np.random.default_rng(0)
        for init in graph.graph.initializer:  # a deliberately wrong graph: every weight perturbed
            values = numpy_helper.to_array(init)
            if values.dtype == np.float32 and values.size > 16:
                init.CopyFrom(numpy_helper.from_array(values + rng.normal(0, 0.5, values.shape).astype(np.float32),
                                                      init.name))
        onnx_lib.save(graph, str(path))

    monkeypatch.setattr(onnx_export, "export_tower", broken)
    encoder = ModelCache().get(siglip_dir, "cpu", "onnx")
    assert encoder.runtime == "torch"  # refused, and the model still works
    assert encoder.encode_texts(["xe hơi"]).shape == (1, encoder.dim)
    assert "disagrees with PyTorch" in caplog.text
    export = onnx_export.find_export(siglip_dir, "hf-dual-encoder", {})
    assert export is not None and "disagrees with PyTorch" in export.refused  # recorded: not tried each run
    assert not list(export.directory.glob("*.onnx"))
    result = CliRunner().invoke(app, ["models", "info", siglip_dir, "--json"])
    assert json.loads(result.stdout)["onnx"]["exported"] is False


def test_a_killed_export_leaves_nothing_half_written(siglip_dir, own_cache):
    """kill -9 in the middle of an export (after the text tower, during the int8 step): no export, no pointer;
    the next use exports whole."""
    script = (
        "import os, signal\n"
        "from mmtools.models import onnx_export, load_encoder\n"
        "onnx_export.quantise_dynamic = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"load_encoder({siglip_dir!r}, 'cpu', 'onnx')\n")
    killed = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), capture_output=True)
    assert killed.returncode == -9
    root = own_cache / "onnx"
    assert not [p for p in root.iterdir() if p.name.startswith("fp-")]  # only temporaries and the lock
    assert not (root / "keys").exists() or not list((root / "keys").iterdir())
    encoder = ModelCache().get(siglip_dir, "cpu", "onnx")
    assert encoder.runtime == "onnx" and encoder.export.has("text", int8=True)
    assert not list(root.glob(".fp-*.tmp"))  # the killed run's temporary directory was swept


def test_search_uses_int8_queries_where_they_agree_and_records_it(siglip_dir, photos, tmp_path):
    runner = CliRunner()
    embedded = runner.invoke(app, ["embed-images", "-m", siglip_dir, str(photos)])
    assert embedded.exit_code == 0, embedded.stderr
    index = tmp_path / "idx.faiss"
    assert runner.invoke(app, ["index", "-o", str(index)], input=embedded.stdout).exit_code == 0
    hits = {}
    for runtime in ("auto", "torch", "onnx-fp32"):
        result = runner.invoke(app, ["search", "-i", str(index), "xe hơi màu đỏ", "con mèo", "-k", "5",
                                     "--runtime", runtime])
        assert result.exit_code == 0, result.stderr
        hits[runtime] = [orjson.loads(line) for line in result.stdout.splitlines()]
    ids = {runtime: [(h["query_id"], h["id"]) for h in found] for runtime, found in hits.items()}
    assert ids["torch"] == ids["onnx-fp32"]  # the same results whatever runs the fp32 model
    fp32_scores = [h["score"] for h in hits["onnx-fp32"]]
    assert np.allclose(fp32_scores, [h["score"] for h in hits["torch"]], atol=1e-5)
    # int8 queries (used: they agreed at export) may swap near-tied hits, never more
    fp32 = {(h["query_id"], h["id"]): h["score"] for h in hits["onnx-fp32"]}
    int8 = {(h["query_id"], h["id"]): h["score"] for h in hits["auto"]}
    assert len(fp32.keys() & int8.keys()) >= 0.8 * len(fp32)
    assert all(abs(fp32[key] - int8[key]) < 0.02 for key in fp32.keys() & int8.keys())
    info = json.loads(runner.invoke(app, ["models", "info", siglip_dir, "--json"]).stdout)["onnx"]
    checked = [value for key, value in info.items() if key.startswith("int8 queries on")]
    assert checked and "used" in checked[0] and "top-10 overlap" in checked[0]


def test_int8_queries_fall_back_to_fp32_where_they_disagree(siglip_dir, own_cache, monkeypatch):
    from mmtools.index.store import IndexInfo
    from mmtools.models import agreement

    monkeypatch.setattr(agreement, "INT8_MIN_OVERLAP", 1.01)  # nothing can agree this well
    encoder = ModelCache().get(siglip_dir, "cpu", "onnx")
    corpus = np.random.default_rng(0).standard_normal((50, encoder.dim)).astype(np.float32)
    info = IndexInfo(model=encoder.name, dim=encoder.dim, fingerprint=encoder.fingerprint, count=50)
    chosen = encoder.for_index(info, lambda: corpus)
    assert chosen.text_int8 is False
    assert encoder.export.agreement()["indexes"][agreement.index_key(info)]["ok"] is False
    monkeypatch.setattr(agreement, "INT8_MIN_OVERLAP", 0.0)
    agreement._decided.clear()
    other = IndexInfo(model=encoder.name, dim=encoder.dim, fingerprint=encoder.fingerprint, count=51)
    assert encoder.for_index(other, lambda: corpus).text_int8 is True
    assert ModelCache().get(siglip_dir, "cpu", "onnx-fp32").for_index(other, lambda: corpus).text_int8 is False


def test_int8_image_vectors_are_their_own_model(siglip_dir, photos, tmp_path):
    runner = CliRunner()
    int8 = runner.invoke(app, ["embed-images", "--int8", "--no-cache", "-m", siglip_dir, str(photos)])
    plain = runner.invoke(app, ["embed-images", "--no-cache", "-m", siglip_dir, str(photos)])
    assert int8.exit_code == 0 and plain.exit_code == 0, int8.stderr + plain.stderr
    first, second = orjson.loads(int8.stdout.splitlines()[0]), orjson.loads(plain.stdout.splitlines()[0])
    assert first["embedding_fingerprint"] == second["embedding_fingerprint"] + "+int8"
    index = tmp_path / "int8.faiss"
    assert runner.invoke(app, ["index", "-o", str(index)], input=int8.stdout).exit_code == 0
    found = runner.invoke(app, ["search", "-i", str(index), "xe hơi", "-k", "2"])
    assert found.exit_code == 0 and len(found.stdout.splitlines()) == 2, found.stderr
    refused = runner.invoke(app, ["search", "-i", str(index), "xe hơi", "--runtime", "torch"])
    assert refused.exit_code != 0 and "int8" in refused.stderr
    mixed = runner.invoke(app, ["index", "-o", str(index)], input=plain.stdout)
    assert mixed.exit_code == 1 and "skipped" in mixed.stderr  # fp32 vectors do not join an int8 index


def test_a_cold_process_with_an_export_imports_no_torch(siglip_dir):
    ModelCache().get(siglip_dir, "cpu", "onnx")  # exported (once per test session)
    script = (
        "import sys\n"
        "from PIL import Image\n"
        "from mmtools.models import load_encoder\n"
        f"e = load_encoder({siglip_dir!r}, 'cpu')\n"
        "e.encode_texts(['xe hơi']); e.encode_images([Image.new('RGB', (40, 40))])\n"
        "print(e.runtime, 'torch' in sys.modules, 'transformers' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], env=os.environ.copy(), capture_output=True, text=True)
    assert out.stdout.split() == ["onnx", "False", "False"], out.stderr


def test_repeated_queries_come_from_the_cache():
    from mmtools.models.query_cache import QueryVectorCache

    class Counting:
        query_key = "fp-x/test"
        calls = 0

        class text_rules:
            max_length = 64

        def encode_texts(self, texts, on_truncated=None):
            Counting.calls += 1
            return np.stack([np.full(4, float(len(t)), np.float32) for t in texts])

    cache, encoder = QueryVectorCache(size=2), Counting()
    first = cache.vectors(encoder, ["xe hơi", "mèo"])
    again = cache.vectors(encoder, ["xe  hơi ", "mèo"])  # the same query, spaced differently
    assert np.array_equal(first, again) and Counting.calls == 1 and cache.hits == 2
    cache.vectors(encoder, ["chó"])  # evicts the oldest
    cache.vectors(encoder, ["xe hơi"])
    assert Counting.calls == 3


def test_models_export_cli_reports_towers_and_agreement(clip_dir):
    result = CliRunner().invoke(app, ["models", "export", clip_dir, "--int8", "--json"])
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["towers"] == "image, image.int8, text, text.int8"
    assert float(record["fp32 text min cosine"]) >= 0.9999
    assert Path(record["directory"]).name == record["fingerprint"]


def test_embed_texts_gives_the_same_vectors_with_either_runtime(clip_dir):
    from mmtools.records import decode_vector

    runner = CliRunner()
    texts = "xe hơi màu đỏ\ncon mèo\n"
    out = {rt: runner.invoke(app, ["embed-texts", "--lines", "-m", clip_dir, "--runtime", rt], input=texts)
           for rt in ("auto", "torch")}
    assert all(r.exit_code == 0 for r in out.values())
    a = np.stack([decode_vector(orjson.loads(line)["embedding"]) for line in out["auto"].stdout.splitlines()])
    b = np.stack([decode_vector(orjson.loads(line)["embedding"]) for line in out["torch"].stdout.splitlines()])
    assert _cos(a, b).min() >= 0.9999


# ------------------------------------------------------------------------- issue 32: the image tower on a CPU


def test_threads_and_decoders_fit_the_cores():
    from mmtools.embed import CPU_IMAGE_BATCH, default_workers
    from mmtools.models.runtime import available_cores, physical_cores

    assert 1 <= physical_cores() <= available_cores()
    assert default_workers(model_on_cpu=True) == max(1, available_cores() // 4)  # the tower takes the cores
    assert default_workers(model_on_cpu=False) == max(1, min(8, available_cores()))  # a GPU to feed
    assert 1 <= CPU_IMAGE_BATCH <= 32


def test_image_agreement_needs_close_vectors_and_the_same_neighbours():
    from mmtools.models.onnx_export import image_agreement

    rng = np.random.default_rng(0)
    fp32 = rng.standard_normal((32, 16)).astype(np.float32)
    texts = rng.standard_normal((5, 16)).astype(np.float32)
    same = image_agreement(fp32, fp32 + 1e-4 * rng.standard_normal(fp32.shape), texts)
    assert same["ok"] and same["min_cosine"] > 0.999 and same["top10_overlap"] == 1.0
    one_off = fp32.copy()
    one_off[3] = rng.standard_normal(16)  # one vector far from its fp32 self: refused, however good the rest
    assert not image_agreement(fp32, one_off, texts)["ok"]
    shuffled = fp32[rng.permutation(32)]  # every vector a unit vector like the rest, neighbours all wrong
    figures = image_agreement(fp32, shuffled, texts)
    assert not figures["ok"] and figures["top10_overlap"] < 0.95 and figures["probes"] == 32


def test_auto_embeds_images_in_int8_where_it_agrees_under_the_models_fingerprint(siglip_dir, photos):
    from mmtools.records import decode_vector

    cache = ModelCache()
    auto, fp32 = cache.get(siglip_dir, "cpu", "auto"), cache.get(siglip_dir, "cpu", "onnx-fp32")
    figures = auto.export.meta["agreement"]["int8_image"]
    assert figures["probes"] >= 32 and "top10_overlap" in figures
    assert auto.images_in_int8 == figures["ok"] and not fp32.images_in_int8
    runner = CliRunner()
    out = {rt: runner.invoke(app, ["embed-images", "--no-cache", "-m", siglip_dir, "--runtime", rt, str(photos)])
           for rt in ("auto", "torch")}
    assert all(r.exit_code == 0 for r in out.values()), out["auto"].stderr
    records = {rt: [orjson.loads(line) for line in r.stdout.splitlines()] for rt, r in out.items()}
    assert {r["embedding_fingerprint"] for r in records["auto"]} == {auto.export.fingerprint}
    a, b = (np.stack([decode_vector(r["embedding"]) for r in records[rt]]) for rt in ("auto", "torch"))
    assert _cos(a, b).min() >= (0.99 if auto.images_in_int8 else 0.999)


def test_an_export_says_what_it_does_and_a_disagreeing_int8_image_tower_is_not_used(siglip_dir, own_cache,
                                                                                 monkeypatch):
    from mmtools.models import onnx_export

    monkeypatch.setattr(onnx_export, "INT8_IMAGE_MIN_COSINE", 1.01)  # nothing agrees this well
    result = CliRunner().invoke(app, ["models", "export", siglip_dir, "--json"])
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    said = [line for line in lines if "ONNX" in line]  # one line before the wait: what, how big, where
    assert len(said) == 1 and "exporting" in said[0] and str(own_cache / "onnx") in said[0]
    assert "B on disk" in said[0] and said[0] == lines[0]
    record = json.loads(result.stdout)
    assert "image.int8" not in record["towers"] and "refused" in record["int8 image min cosine"]
    encoder = ModelCache().get(siglip_dir, "cpu", "auto")
    assert not encoder.images_in_int8 and encoder.precision.endswith("image fp32")
    info = json.loads(CliRunner().invoke(app, ["models", "info", siglip_dir, "--json"]).stdout)["onnx"]
    assert info["size"].endswith("B") and info["size"][0].isdigit()
    assert info["directory"] == record["directory"]


def test_embed_images_runs_a_batch_per_core_at_once_with_the_vectors_of_one_at_a_time(siglip_dir, photos,
                                                                                       monkeypatch):
    import threading

    from mmtools.embed import embed_images
    from mmtools.images import discover_images
    from mmtools.models import runtime

    monkeypatch.setattr(runtime, "physical_cores", lambda: 2)
    encoder = ModelCache().get(siglip_dir, "cpu", "onnx-fp32")
    assert encoder.image_batches_at_once == 2
    threads, original = set(), encoder.encode_image_batch_alone

    def alone(batch):
        threads.add(threading.current_thread().name)
        return original(batch)

    monkeypatch.setattr(encoder, "encode_image_batch_alone", alone)
    records = list(embed_images(discover_images([str(photos)]), encoder, batch_size=2))
    assert len(records) == 8 and len(threads) == 2  # two workers, each encoding its own batches
    from mmtools.records import decode_vector

    sources = list(discover_images([str(photos)]))
    from mmtools.images import load_image

    for start in range(0, 8, 2):
        images = [load_image(s.path, draft_size=encoder.image_size) for s in sources[start:start + 2]]
        serial = encoder.encode_image_batch(encoder.preprocess_images(images))
        got = np.stack([decode_vector(r["embedding"]) for r in records[start:start + 2]])
        assert np.allclose(got, serial, atol=1e-5)
