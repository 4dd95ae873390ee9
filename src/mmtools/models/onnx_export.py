"""Exporting a model's towers to ONNX, checked against PyTorch, cached by the model's fingerprint.

An export lives in ``MMTOOLS_CACHE_DIR/onnx/FINGERPRINT/``::

    meta.json         what the ONNX encoder needs (text rules, tokenizer settings, image preprocessing, logit
                      scale) and the agreement measured at export
    text.onnx         the text tower, fp32, unit vectors out (dynamic batch; dynamic length except SigLIP's
                      fixed 64 tokens, which takes no attention mask)
    image.onnx        the image tower, fp32 (dynamic batch)
    text.int8.onnx    the text tower with int8 weights (ONNX Runtime dynamic quantisation): the query path
    image.int8.onnx   the image tower in int8, only when asked for (embed-images --int8)
    tokenizer.json    the fast tokenizer, so queries are tokenised without transformers
    agreement.json    per index: the int8 query path's agreement with fp32 on that index's own vectors

The directory is written whole beside its place and swapped in (mmtools.atomic), so a killed export leaves the
old one or none. ``keys/FILES_KEY`` points from a hash of the model's files (cheap: no torch, no
transformers) to the fingerprint, so a cold process finds its export without loading the model.

Checks: each fp32 tower must give the PyTorch vectors on probe inputs (cosine >= FP32_MIN_COSINE), else the
export is refused, the reason recorded, and the model runs on PyTorch. The int8 text tower must agree with
fp32 on probe texts (cosine >= INT8_MIN_COSINE each) and, per index, its top-10 neighbours among a sample of
the index's vectors must overlap fp32's (>= INT8_MIN_OVERLAP); where it does not, queries use fp32. The int8
image tower (per-channel int8 weights, reduce_range) is checked on IMAGE_AGREEMENT_PROBES images at the model's
own input size: every vector within INT8_IMAGE_MIN_COSINE of fp32's, and the top-10 images of each probe text
and probe image the same as fp32's (>= INT8_MIN_OVERLAP); only then does ``auto`` embed images with it, under
the model's own fingerprint (its vectors are, to that measured tolerance, the model's).

An export takes a minute or two for a base-size model and writes several hundred MB: whoever listens
(mmtools.notices: the CLI prints one line, and a progress bar on a terminal) hears when it starts, each step,
and where it went and how big it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mmtools.errors import ModelError
from mmtools.notices import tell

log = logging.getLogger("mmtools")

EXPORT_FORMAT = 1
OPSET = 17
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.995
INT8_MIN_OVERLAP = 0.95
INT8_IMAGE_MIN_COSINE = 0.99  # int8 image vectors to fp32's, each: then they are the model's vectors
IMAGE_AGREEMENT_PROBES = 32  # real-size probe images the int8 image tower is checked on
OVERLAP_K = 10
INDEX_SAMPLE = 2000  # index vectors the top-10 overlap is measured over
META, AGREEMENT, TOKENIZER = "meta.json", "agreement.json", "tokenizer.json"

# Probe queries: Vietnamese first, as users type them, with a few English ones and one longer than any limit.
PROBE_TEXTS = [
    "xe hơi màu đỏ", "con mèo nằm trên ghế", "bãi biển lúc hoàng hôn", "phố cổ Hà Nội", "đĩa phở bò",
    "trẻ em chơi bóng đá trong sân trường", "chợ nổi miền Tây", "núi và ruộng bậc thang ở Sa Pa",
    "cà phê sữa đá", "người bán hoa trên xe đạp", "phòng ngủ có điều hòa và cửa sổ lớn", "áo dài trắng",
    "mưa lớn trên đường phố", "một con chó đang chạy", "bánh mì thịt nướng", "cầu Rồng Đà Nẵng ban đêm",
    "a red car parked in front of a house", "a cat sleeping on a sofa", "sunset over the sea", "a bowl of noodles",
    "hòa bình", "thuỷ thủ", "khỏe mạnh", "ĐƯỜNG PHỐ ĐÔNG NGƯỜI",
    " ".join(["một ngôi nhà nhỏ bên dòng sông xanh"] * 40),
]


@dataclass
class TowerSpec:
    """What a PyTorch encoder hands the exporter: its two towers (raw features out), how it builds text inputs
    from prepared texts, its tokenizer and image preprocessing, and its logit scale and bias."""

    text: Callable[..., Any]
    image: Callable[[Any], Any]
    text_inputs: Callable[[list[str]], dict[str, Any]]
    prepare_text: Callable[[list[str]], list[str]]
    tokenizer: Any
    tokenizer_dir: str  # relative to the model directory: where a transformers tokenizer can be loaded from
    image_dir: str
    fast_images: Any
    image_processor: Any
    image_size: int | None
    logit: tuple[float, float | None]
    modules: list[Any] = field(default_factory=list)


def export_size(directory: Path) -> int:
    """Bytes the export takes on disk."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


class ExportRefused(ModelError):
    """The export failed or disagrees with PyTorch: the model runs on PyTorch, and this says why."""


# ------------------------------------------------------------------------------------------------ finding


def exports_root() -> Path:
    from mmtools.paths import cache_dir

    return cache_dir() / "onnx"


def files_key(location: str, family: str, manifest: dict[str, Any]) -> str | None:
    """A hash of what decides the model's vectors, computed without torch or transformers (file hashes are
    cached, so it costs a stat per file); None when the model is not on this machine."""
    from mmtools.filehash import file_sha256
    from mmtools.models.fingerprint import model_directory, model_files

    try:
        directory = model_directory(location)
    except ModelError:
        return None
    identity = {"format": EXPORT_FORMAT, "family": family, "text": manifest.get("text", {}),
                "files": {f.relative_to(directory).as_posix(): file_sha256(f) for f in model_files(directory)
                          if f.name != "mmtools.json"}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Export:
    """An export directory, read: its manifest, and which files it has."""

    def __init__(self, directory: Path):
        self.directory = directory
        try:
            self.meta: dict[str, Any] = json.loads((directory / META).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"ONNX export {directory} cannot be read ({exc})",
                             hint=f"remove {directory}; it is made again on first use") from None

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def refused(self) -> str | None:
        return self.meta.get("refused")

    def path(self, tower: str, int8: bool = False) -> Path:
        return self.directory / f"{tower}{'.int8' if int8 else ''}.onnx"

    def has(self, tower: str, int8: bool = False) -> bool:
        return self.path(tower, int8).is_file()

    @property
    def int8_text_ok(self) -> bool:
        return bool(self.meta.get("agreement", {}).get("int8_text", {}).get("ok"))

    @property
    def int8_image_ok(self) -> bool:
        """The int8 image tower passed the real-size agreement check (cosine and top-10 overlap): ``auto`` may
        embed with it under the model's fingerprint. (Exports from before that check kept only a cosine.)"""
        figures = self.meta.get("agreement", {}).get("int8_image", {})
        return bool(figures.get("ok")) and "top10_overlap" in figures and self.has("image", int8=True)

    def agreement(self) -> dict[str, Any]:
        try:
            return json.loads((self.directory / AGREEMENT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"indexes": {}}


def find_export(location: str, family: str, manifest: dict[str, Any]) -> Export | None:
    """The export of this model, if one was made (or refused) before; never loads the model."""
    key = files_key(location, family, manifest)
    if key is None:
        return None
    root = exports_root()
    try:
        fingerprint = (root / "keys" / key).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    directory = root / fingerprint
    if not fingerprint.startswith("fp-") or not (directory / META).is_file():
        return None
    export = Export(directory)
    if export.meta.get("format") != EXPORT_FORMAT:
        return None  # made by another mmtools: made again
    return export


# ------------------------------------------------------------------------------------------------ exporting


def export_model(encoder: Any, *, int8_images: bool = False) -> Export:
    """Export ``encoder`` (a PyTorch encoder with ``export_spec``), or add what is missing to its export
    (``int8_images``: the int8 image tower, to an export made before it was part of every export).

    A new export holds both towers in fp32, the int8 text tower and, where it agrees with fp32, the int8 image
    tower. Returns the export, which may record a refusal (``Export.refused``): then the model runs on PyTorch.
    """
    from mmtools.atomic import atomic_directory, sweep_temporaries

    fingerprint = encoder.fingerprint
    root = exports_root()
    target = root / fingerprint
    with _export_lock(root, fingerprint):
        sweep_temporaries(target)  # what a killed export left (we hold the lock: nobody else is writing)
        existing = Export(target) if (target / META).is_file() else None
        if existing is not None and existing.meta.get("format") == EXPORT_FORMAT and (
                existing.refused or not int8_images or "int8_image" in existing.meta.get("agreement", {})):
            _point(root, encoder, fingerprint)
            return existing
        started = time.perf_counter()
        steps = 1 if existing is not None and not existing.refused else len(_STEPS)
        tell(f"exporting {encoder.name} to ONNX for the CPU, once per model (a minute or more for a base-size "
             f"model; about {_expected_size(encoder)} on disk) into {target}", 0, steps)
        with atomic_directory(target) as tmp:
            meta = _build(encoder, tmp, existing)
            if meta.get("refused"):  # keep only the record of why: a refused graph is never run
                for made in tmp.iterdir():
                    made.unlink()
            meta["export_seconds"] = round(time.perf_counter() - started, 2)
            (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _point(root, encoder, fingerprint)
    export = Export(target)
    if export.refused:
        tell(f"ONNX export of {encoder.name} refused ({export.refused})", steps, steps)
    else:
        from mmtools.models.manage import human_size

        tell(f"ONNX export of {encoder.name}: {human_size(export_size(target))} in {target}, "
              f"{time.perf_counter() - started:.0f} s", steps, steps)
    return export


_STEPS = ("the text tower", "the image tower", "the int8 text tower", "the int8 image tower")


def _expected_size(encoder: Any) -> str:
    """About what an export of ``encoder`` takes: its fp32 towers are its weights, the int8 ones a quarter."""
    from mmtools.models.fingerprint import model_directory
    from mmtools.models.manage import human_size

    try:
        weights = sum(p.stat().st_size for p in model_directory(encoder.location or encoder.name).rglob("*")
                      if p.suffix == ".safetensors")
    except (ModelError, OSError):
        return "1.25x the model's weights"
    return human_size(int(weights * 1.25))


def _build(encoder: Any, tmp: Path, existing: Export | None) -> dict[str, Any]:
    """Write the export's files into ``tmp``; the manifest to write (with ``refused`` set if it failed)."""
    from mmtools import __version__

    meta: dict[str, Any] = {"format": EXPORT_FORMAT, "mmtools_version": __version__, "name": encoder.name,
                            "fingerprint": encoder.fingerprint, "family": encoder.family}
    try:
        spec = encoder.export_spec()
    except AttributeError:
        return {**meta, "refused": f"the {encoder.family} family has no ONNX export"}
    if existing is not None and not existing.refused:
        for name in os.listdir(existing.directory):  # keep what was made and checked before
            if name.endswith(".onnx") or name in (TOKENIZER, AGREEMENT):
                shutil.copy2(existing.directory / name, tmp / name)
        meta.update({k: v for k, v in existing.meta.items() if k not in ("export_seconds",)})
    else:
        try:
            meta.update(_describe(encoder, spec, tmp))
            agreement = meta.setdefault("agreement", {})
            agreement["fp32_text"] = _export_text(spec, tmp, meta)
            tell("exported the text tower", 1, len(_STEPS))
            agreement["fp32_image"] = _export_image(spec, tmp)
            tell("exported the image tower", 2, len(_STEPS))
            agreement["int8_text"] = _quantise_text(spec, tmp, meta)
            tell("made the int8 text tower", 3, len(_STEPS))
        except ExportRefused as exc:
            return {**meta, "refused": exc.message}
        except Exception as exc:  # torch.onnx raises many kinds for graphs it cannot trace
            return {**meta, "refused": f"export failed: {type(exc).__name__}: {_first_line(exc)}"}
    if "int8_image" not in meta.get("agreement", {}) and not (tmp / "image.int8.onnx").is_file():
        meta.setdefault("agreement", {})["int8_image"] = _quantise_image(spec, tmp, meta)
    return meta


def _describe(encoder: Any, spec: TowerSpec, tmp: Path) -> dict[str, Any]:
    import dataclasses

    rules = encoder.text_rules
    scale, bias = spec.logit
    described = {"dim": int(encoder.dim), "text_rules": {k: v for k, v in dataclasses.asdict(rules).items()},
                 "image_size": spec.image_size, "tokenizer_dir": spec.tokenizer_dir, "image_dir": spec.image_dir,
                 "fast_images": spec.fast_images.to_dict() if spec.fast_images is not None else None,
                 "logit_scale": scale, "logit_bias": bias,
                 "pad_id": getattr(spec.tokenizer, "pad_token_id", None) or 0,
                 "padding_side": getattr(spec.tokenizer, "padding_side", "right") or "right"}
    described["tokenizer"] = _save_fast_tokenizer(spec, rules, tmp, described)
    return described


def _save_fast_tokenizer(spec: TowerSpec, rules: Any, tmp: Path, described: dict[str, Any]) -> str:
    """"tokenizers" when the model's fast tokenizer, run bare, gives exactly the ids transformers gives (then
    queries are tokenised without transformers), else "transformers"."""
    backend = getattr(spec.tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "transformers"
    from tokenizers import Tokenizer

    bare = Tokenizer.from_str(backend.to_str())
    bare.no_padding()
    bare.no_truncation()
    bare.save(str(tmp / TOKENIZER))
    from mmtools.models.onnx_encoder import FastTokens

    tokens = FastTokens(tmp / TOKENIZER, rules.max_length, rules.padding == "max_length", described["pad_id"],
                        described["padding_side"])
    prepared = spec.prepare_text(PROBE_TEXTS)
    expected = spec.text_inputs(prepared)
    got, _truncated = tokens(prepared)
    same = all(name in got and got[name].shape == tuple(value.shape) and (got[name] == value.numpy()).all()
               for name, value in expected.items() if name in ("input_ids", "attention_mask"))
    if not same:
        (tmp / TOKENIZER).unlink()
        return "transformers"
    return "tokenizers"


def _export_text(spec: TowerSpec, tmp: Path, meta: dict[str, Any]) -> dict[str, Any]:
    import torch

    prepared = spec.prepare_text(PROBE_TEXTS)
    inputs = spec.text_inputs(prepared)
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in inputs]
    meta["text_inputs"] = names
    fixed = meta["text_rules"].get("padding") == "max_length"
    axes = {name: ({0: "batch"} if fixed else {0: "batch", 1: "sequence"}) for name in names}

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList(spec.modules)

        def forward(self, *values: Any) -> Any:
            return torch.nn.functional.normalize(spec.text(**dict(zip(names, values))).float(), dim=-1)

    module = Text().eval()
    sample = tuple(inputs[name][:2] for name in names)
    export_tower(module, sample, names, axes, tmp / "text.onnx")
    with torch.inference_mode():
        reference = module(*(inputs[name] for name in names)).numpy()
    got = run_onnx(tmp / "text.onnx", {name: inputs[name].numpy() for name in names})
    cosine = _min_cosine(reference, got)
    if cosine < FP32_MIN_COSINE:
        raise ExportRefused(f"the ONNX text tower disagrees with PyTorch (cosine {cosine:.5f} on a probe text, "
                            f"below {FP32_MIN_COSINE})")
    return {"min_cosine": round(cosine, 6), "probes": len(PROBE_TEXTS)}


def probe_images(size: int, count: int = 8) -> list[Any]:
    """Deterministic RGB probe images: gradients, stripes and noise at a few sizes and aspect ratios."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for i in range(count):
        width, height = size + 16 * i, size + 24 * (count - i)
        y, x = np.mgrid[0:height, 0:width]
        pattern = np.stack([(x * (i + 1)) % 256, (y * 3) % 256, ((x + y) * (i + 2)) % 256], axis=-1)
        noise = rng.integers(0, 64, (height, width, 3))
        images.append(Image.fromarray(np.clip(pattern + noise, 0, 255).astype(np.uint8), "RGB"))
    return images


def _image_batch(spec: TowerSpec, count: int = 8) -> Any:
    import torch

    images = probe_images(spec.image_size or 224, count)
    if spec.fast_images is not None:
        return torch.from_numpy(spec.fast_images.as_array(images))
    return spec.image_processor(images=images, return_tensors="pt")["pixel_values"]


def _export_image(spec: TowerSpec, tmp: Path) -> dict[str, Any]:
    import torch

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList(spec.modules)

        def forward(self, pixel_values: Any) -> Any:
            return torch.nn.functional.normalize(spec.image(pixel_values).float(), dim=-1)

    module = Image().eval()
    pixels = _image_batch(spec)
    export_tower(module, (pixels[:2],), ["pixel_values"], {"pixel_values": {0: "batch"}}, tmp / "image.onnx")
    with torch.inference_mode():
        reference = module(pixels).numpy()
    got = run_onnx(tmp / "image.onnx", {"pixel_values": pixels.numpy()})
    cosine = _min_cosine(reference, got)
    if cosine < FP32_MIN_COSINE:
        raise ExportRefused(f"the ONNX image tower disagrees with PyTorch (cosine {cosine:.5f} on a probe image, "
                            f"below {FP32_MIN_COSINE})")
    return {"min_cosine": round(cosine, 6), "probes": len(pixels)}


def _quantise_text(spec: TowerSpec, tmp: Path, meta: dict[str, Any]) -> dict[str, Any]:
    names = meta["text_inputs"]
    inputs = {name: value.numpy() for name, value in spec.text_inputs(spec.prepare_text(PROBE_TEXTS)).items()
              if name in names}
    return _quantise(tmp / "text.onnx", tmp / "text.int8.onnx", inputs)


def _quantise_image(spec: TowerSpec, tmp: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The int8 image tower, kept when it agrees with fp32 on IMAGE_AGREEMENT_PROBES real-size images: each
    vector within INT8_IMAGE_MIN_COSINE, and the top-10 images of each probe text and image the same."""
    source, target = tmp / "image.onnx", tmp / "image.int8.onnx"
    quantise_dynamic(source, target)
    pixels = _image_batch(spec, IMAGE_AGREEMENT_PROBES).numpy()
    fp32 = _run_batched(source, pixels)
    int8 = _run_batched(target, pixels)
    texts = None
    if (tmp / "text.onnx").is_file():
        names = meta.get("text_inputs", ["input_ids"])
        inputs = {name: value.numpy() for name, value in
                  spec.text_inputs(spec.prepare_text(PROBE_TEXTS)).items() if name in names}
        texts = run_onnx(tmp / "text.onnx", inputs)
    figures = image_agreement(fp32, int8, texts)
    if not figures["ok"]:
        target.unlink()
    return figures


def image_agreement(fp32: Any, int8: Any, texts: Any = None) -> dict[str, Any]:
    """int8 image vectors against fp32's for the same images: the lowest cosine, and the mean top-10 overlap of
    the images each query finds among them (queries: ``texts`` vectors, and every fp32 image vector)."""
    import numpy as np

    fp32, int8 = np.asarray(fp32, np.float32), np.asarray(int8, np.float32)
    cosine = _min_cosine(fp32, int8)
    queries = fp32 if texts is None else np.concatenate([np.asarray(texts, np.float32), fp32])
    overlap = top_k_overlap_corpora(queries, fp32, int8)
    return {"min_cosine": round(cosine, 6), "top10_overlap": round(overlap, 4), "probes": int(len(fp32)),
            "ok": cosine >= INT8_IMAGE_MIN_COSINE and overlap >= INT8_MIN_OVERLAP,
            "threshold": INT8_IMAGE_MIN_COSINE, "overlap_threshold": INT8_MIN_OVERLAP}


def _run_batched(path: Path, pixels: Any, batch: int = 8) -> Any:
    import numpy as np

    run = session(path, spin=False)
    return np.concatenate([run.run(None, {"pixel_values": pixels[i:i + batch]})[0]
                           for i in range(0, len(pixels), batch)])


def _quantise(source: Path, target: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """Dynamic int8 quantisation of ``source``, kept only if every probe vector is within INT8_MIN_COSINE."""
    quantise_dynamic(source, target)
    cosine = _min_cosine(run_onnx(source, inputs), run_onnx(target, inputs))
    ok = cosine >= INT8_MIN_COSINE
    if not ok:
        target.unlink()
    return {"min_cosine": round(cosine, 6), "probes": len(next(iter(inputs.values()))), "ok": ok,
            "threshold": INT8_MIN_COSINE}


# ------------------------------------------------------------------------------------- the ONNX primitives


def export_tower(module: Any, sample: tuple[Any, ...], names: list[str], axes: dict[str, dict[int, str]],
                 path: Path) -> None:
    """torch.onnx.export with the settings that work for these towers (TorchScript tracer, opset 17)."""
    import warnings

    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: checked below
        torch.onnx.export(module, sample, str(path), input_names=names, output_names=["vectors"],
                          dynamic_axes={**axes, "vectors": {0: "batch"}}, opset_version=OPSET, dynamo=False)


def quantise_dynamic(source: Path, target: Path) -> None:
    import logging as logging_module

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging_module.getLogger()  # the quantiser logs a pre-processing tip on the root logger
    level = quiet.level
    quiet.setLevel(logging_module.ERROR)
    try:
        # Per-channel weights keep each output channel's own scale; reduce_range (7-bit weights) keeps the u8*s8
        # products of CPUs without VNNI (AVX2 only) from saturating.
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True)
    finally:
        quiet.setLevel(level)


def session(path: Path, threads: int | None = None, spin: bool = True) -> Any:
    """An ONNX Runtime CPU session: every graph optimisation, one intra-op thread per physical core this process
    may use (SMT siblings share one core's vector units), operators run one after another. ``spin`` False:
    idle intra-op threads sleep rather than spin, leaving the cores to the threads decoding the next images
    (and to other programs); a throughput job loses nothing by it, a query's latency would."""
    import onnxruntime as ort

    from mmtools.models.runtime import physical_cores

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path: Path, inputs: dict[str, Any]) -> Any:
    return session(path).run(None, inputs)[0]


def _min_cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return float(cos.min())


def top_k_overlap(queries_a: Any, queries_b: Any, corpus: Any, k: int = OVERLAP_K) -> float:
    """Mean share of the top-``k`` neighbours (by inner product in ``corpus``) two sets of query vectors have
    in common."""
    return _shared_top_k(queries_a @ corpus.T, queries_b @ corpus.T, k)


def top_k_overlap_corpora(queries: Any, corpus_a: Any, corpus_b: Any, k: int = OVERLAP_K) -> float:
    """Mean share of the top-``k`` items each query finds in two versions of one corpus (same items, same
    order: e.g. fp32 and int8 vectors of the same images) that are the same items."""
    return _shared_top_k(queries @ corpus_a.T, queries @ corpus_b.T, k)


def _shared_top_k(scores_a: Any, scores_b: Any, k: int) -> float:
    import numpy as np

    k = min(k, scores_a.shape[1])
    if k == 0:
        return 1.0
    top_a = np.argsort(-scores_a, axis=1)[:, :k]
    top_b = np.argsort(-scores_b, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)]))


# ---------------------------------------------------------------------------------------- bookkeeping


def record_index_agreement(export: Export, key: str, figures: dict[str, Any]) -> None:
    """Remember the int8 query path's agreement on one index (agreement.json, replaced atomically)."""
    from mmtools.records import atomic_path

    with _export_lock(export.directory.parent, export.fingerprint):
        data = export.agreement()
        data.setdefault("indexes", {})[key] = figures
        with atomic_path(export.directory / AGREEMENT, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _point(root: Path, encoder: Any, fingerprint: str) -> None:
    from mmtools.records import atomic_path

    key = files_key(encoder.location or encoder.name, encoder.family, _manifest_of(encoder))
    if key is None:
        return
    (root / "keys").mkdir(parents=True, exist_ok=True)
    with atomic_path(root / "keys" / key, suffix=".tmp") as tmp:
        Path(tmp).write_text(fingerprint + "\n", encoding="utf-8")


def _manifest_of(encoder: Any) -> dict[str, Any]:
    from mmtools.models.registry import read_manifest

    try:
        return read_manifest(Path(encoder.location)) if encoder.location and Path(encoder.location).is_dir() else {}
    except ModelError:
        return {}


@contextmanager
def _export_lock(root: Path, fingerprint: str) -> Iterator[None]:
    """One export of a model at a time on this machine: a second process waits, then finds it made."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{fingerprint}.lock", "a+b") as lock:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
