"""Exporting a trained tagger's branches to ONNX, checked against PyTorch, cached by the tagger's files.

A cold ``mmtools tag --model TAGGER`` then pays for ONNX Runtime, the tokenizers library and numpy, not for
importing PyTorch and transformers and building two towers (mmtools.tag.onnx_tagger runs it). The export
lives in ``MMTOOLS_CACHE_DIR/onnx-taggers/KEY/`` (KEY: a hash of the tagger's files and network spec, cheap to
compute: file hashes are cached)::

    meta.json       labels, modality, fusion, text rules, tokenizer and image preprocessing settings, the
                    graphs' inputs, and the agreement measured at export (or why the export was refused)
    text.onnx       text branch: token ids (and mask) -> the text head's logits (fp32)
    image.onnx      image branch: pixels -> the image head's logits (fp32); pixels made as CLIP's and SigLIP's
                    processors make them without transformers (mmtools.models.image_preprocess), else by the
                    tagger's own image processor
    tokenizer.json  the text tower's fast tokenizer, run bare (where it gives the tagger's token ids; else the
                    tagger's own tokenizer is loaded with transformers, as PhoBERT's slow one)

What is exported: taggers reading text only, images only, or both with late fusion (each head's logits are
averaged over the modalities a record has, as the network does). Concat and attention fusion mix the towers
inside the network: those taggers run on PyTorch. Checks: each branch's probabilities must be within PROBABILITY_TOLERANCE of
PyTorch's on probe texts and probe images; else the export is refused (the reason recorded) and the tagger
runs on PyTorch. The directory is written whole and swapped in (mmtools.atomic).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from mmtools.errors import ModelError
from mmtools.models.onnx_export import PROBE_TEXTS, Export, ExportRefused, export_size
from mmtools.notices import tell

TAGGER_EXPORT_FORMAT = 1
PROBABILITY_TOLERANCE = 1e-4  # a label's probability, ONNX against PyTorch: tags stay the tagger's
META, TOKENIZER = "meta.json", "tokenizer.json"
EXPORTED_FUSIONS = ("late",)  # for two-tower taggers; one-tower taggers always


def exports_root() -> Path:
    from mmtools.paths import cache_dir

    return cache_dir() / "onnx-taggers"


def exportable(spec: Any) -> str | None:
    """Why a tagger of ``spec`` has no ONNX export, or None when it can have one."""
    if spec.modality == "both" and spec.fusion not in EXPORTED_FUSIONS:
        return f"{spec.fusion} fusion mixes the towers inside the network; it runs on PyTorch"
    return None


def tagger_key(directory: Path, manifest: dict[str, Any]) -> str | None:
    """A hash of what decides the tagger's outputs (weights, tower configs, tokenizer, image processor,
    network spec, text rules), with no torch; None when it cannot be read."""
    from mmtools.models.onnx_export import files_key

    files = files_key(str(directory), "mmtools-tagger", manifest)
    if files is None:
        return None
    identity = {"format": TAGGER_EXPORT_FORMAT, "files": files, "tagger": manifest.get("tagger"),
                "text": manifest.get("text")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


TaggerExport = Export  # an export directory, read (meta.json, refused, path of each branch's graph)


def find_tagger_export(directory: Path, manifest: dict[str, Any]) -> TaggerExport | None:
    """The export of this tagger if one was made (or refused) before; never loads torch."""
    key = tagger_key(directory, manifest)
    if key is None:
        return None
    target = exports_root() / key
    if not (target / META).is_file():
        return None
    export = TaggerExport(target)
    return export if export.meta.get("format") == TAGGER_EXPORT_FORMAT else None


def export_tagger(directory: Path, manifest: dict[str, Any]) -> TaggerExport:
    """Export the tagger in ``directory`` (loaded on PyTorch), or find it made by another process meanwhile.
    The export may record a refusal (``TaggerExport.refused``): then the tagger runs on PyTorch."""
    from mmtools.atomic import atomic_directory, sweep_temporaries
    from mmtools.models.manage import human_size
    from mmtools.models.onnx_export import _export_lock

    key = tagger_key(directory, manifest)
    if key is None:
        raise ModelError(f"tagger {directory} cannot be read for an ONNX export")
    root = exports_root()
    target = root / key
    with _export_lock(root, key):
        sweep_temporaries(target)
        if (target / META).is_file():
            existing = TaggerExport(target)
            if existing.meta.get("format") == TAGGER_EXPORT_FORMAT:
                return existing
        started = time.perf_counter()
        weights = sum(p.stat().st_size for p in Path(directory).glob("*.safetensors"))
        tell(f"exporting tagger {directory} to ONNX for the CPU, once per tagger (about {human_size(weights)} on "
             f"disk) into {target}", 0, 1)
        with atomic_directory(target) as tmp:
            meta = {"format": TAGGER_EXPORT_FORMAT, "tagger": str(directory)}
            try:
                meta.update(_build(directory, tmp))
            except (ExportRefused, ModelError) as exc:
                if not isinstance(exc, ExportRefused):
                    raise  # the tagger itself cannot be loaded: said as PyTorch says it, nothing recorded

                meta["refused"] = exc.message
            except Exception as exc:  # torch.onnx raises many kinds for graphs it cannot trace
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                meta["refused"] = f"export failed: {type(exc).__name__}: {first}"
            if meta.get("refused"):
                for made in tmp.iterdir():
                    made.unlink()
            (tmp / META).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    export = TaggerExport(target)
    tell(f"ONNX export of tagger {directory}: " + (f"refused ({export.refused})" if export.refused else
         f"{human_size(export_size(target))} in {target}, {time.perf_counter() - started:.0f} s"), 1, 1)
    return export


def _build(directory: Path, tmp: Path) -> dict[str, Any]:
    from mmtools.tag.trained import TrainedTagger

    tagger = TrainedTagger(str(directory), "cpu")
    spec = tagger.spec
    why = exportable(spec)
    if why:
        raise ExportRefused(why)
    meta: dict[str, Any] = {"agreement": {}}
    if spec.uses_text:
        meta.update(_text_settings(tagger, directory, tmp))
        meta["agreement"]["text"] = _export_branch(tagger, "text", tmp, meta)
    if spec.uses_image:
        fast = tagger.batches._fast  # None: the tagger's image processor is loaded with transformers
        meta["fast_images"] = fast.to_dict() if fast is not None else None
        meta["image_size"] = tagger.batches.image_size
        meta["agreement"]["image"] = _export_branch(tagger, "image", tmp, meta)
    return meta


def _probe_texts(tagger: Any) -> list[str]:
    return tagger.batches.prepare_texts(PROBE_TEXTS + list(tagger.labels))


def _text_settings(tagger: Any, directory: Path, tmp: Path) -> dict[str, Any]:
    """How the ONNX tagger tokenises: the bare fast tokenizer ("tokenizers", no transformers) when it gives
    exactly the ids the tagger's tokenizer gives, else that tokenizer itself ("transformers")."""
    from mmtools.tag.onnx_tagger import tokens_for

    tokenizer, rules = tagger.batches.tokenizer, tagger.batches.rules
    settings = {"text_rules": {k: v for k, v in rules.__dict__.items()}, "tokenizer": "transformers",
                "pad_id": getattr(tokenizer, "pad_token_id", None) or 0,
                "padding_side": getattr(tokenizer, "padding_side", "right") or "right"}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return settings
    from tokenizers import Tokenizer

    bare = Tokenizer.from_str(backend.to_str())
    bare.no_padding()
    bare.no_truncation()
    bare.save(str(tmp / TOKENIZER))
    texts = _probe_texts(tagger)
    expected = tagger.batches([_sample(text=t) for t in texts])["text"]
    got = tokens_for(tmp, directory, {**settings, "tokenizer": "tokenizers"})(texts)[0]
    if all(got[name].shape == tuple(expected[name].shape) and (got[name] == expected[name].numpy()).all()
           for name in ("input_ids", "attention_mask")):
        settings["tokenizer"] = "tokenizers"
    else:
        (tmp / TOKENIZER).unlink()
    return settings


def _sample(text: str | None = None, image: Any = None) -> Any:
    from mmtools.tag.batches import Sample

    return Sample(id="probe", text=text, image=image)


def _branch_module(model: Any, branch: str) -> Any:
    """One tower and its head: inputs -> that head's logits (what the network averages for late fusion)."""
    import torch

    head = model.head if model.spec.modality != "both" else getattr(model, f"{branch}_head")

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.branch_head = model, head

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.branch_head(self.model.encode_text({"input_ids": input_ids,
                                                            "attention_mask": attention_mask})[0])

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.branch_head = model, head

        def forward(self, pixel_values: Any) -> Any:
            return self.branch_head(self.model.encode_image(pixel_values)[0])

    return (Text() if branch == "text" else Image()).eval()


def _export_branch(tagger: Any, branch: str, tmp: Path, meta: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from mmtools.models.onnx_export import export_tower, probe_images, session

    module = _branch_module(tagger.model, branch)
    if branch == "text":
        batch = tagger.batches([_sample(text=t) for t in _probe_texts(tagger)])["text"]
        names = ["input_ids", "attention_mask"]
        values = tuple(batch[name] for name in names)
        fixed = meta["text_rules"].get("padding") == "max_length"
        axes = {name: ({0: "batch"} if fixed else {0: "batch", 1: "sequence"}) for name in names}
    else:
        images = probe_images(meta["image_size"] or 224)
        values = (tagger.batches.pixels(images),)
        names, axes = ["pixel_values"], {"pixel_values": {0: "batch"}}
    path = tmp / f"{branch}.onnx"
    export_tower(module, tuple(v[:2] for v in values), names, axes, path)
    with torch.inference_mode():
        reference = torch.sigmoid(module(*values).float()).numpy()
    run = session(path)
    taken = {i.name for i in run.get_inputs()}  # an input the branch never reads is left out of the graph
    inputs = {name: value.numpy() for name, value in zip(names, values) if name in taken}
    got = run.run(None, inputs)[0]
    got = 1.0 / (1.0 + np.exp(-got.astype(np.float64)))
    worst = float(np.abs(got - reference).max())
    if not worst <= PROBABILITY_TOLERANCE:
        raise ExportRefused(f"the ONNX {branch} branch disagrees with PyTorch (a probability off by {worst:.2g}, "
                            f"above {PROBABILITY_TOLERANCE})")
    meta[f"{branch}_inputs"] = list(inputs)
    return {"max_probability_difference": float(f"{worst:.3g}"), "probes": int(len(reference))}
