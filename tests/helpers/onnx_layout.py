"""A model's towers written in the Transformers.js / onnx-community layout (what `onnx-community/...-ONNX`
repositories hold), for tests of models that run without PyTorch. Needs torch: the tests build it."""

from __future__ import annotations

import shutil
from pathlib import Path

SIDE_FILES = ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json")


def write_transformers_js(model_dir: str | Path, target: str | Path) -> Path:
    """``config.json``, preprocessing and tokenizer files, and ``onnx/text_model.onnx`` /
    ``onnx/vision_model.onnx`` whose outputs are ``last_hidden_state`` and ``pooler_output`` (not unit
    vectors), as optimum exports a SigLIP's or CLIP's towers."""
    import torch
    from transformers import AutoModel

    model_dir, target = Path(model_dir), Path(target)
    (target / "onnx").mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        if (model_dir / name).is_file():
            shutil.copy(model_dir / name, target / name)
    model = AutoModel.from_pretrained(model_dir).eval()
    size = model.config.vision_config.image_size

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids):
            out = self.model.text_model(input_ids=input_ids)
            return out.last_hidden_state, out.pooler_output

    class Vision(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            out = self.model.vision_model(pixel_values=pixel_values)
            return out.last_hidden_state, out.pooler_output

    import warnings

    outputs = ["last_hidden_state", "pooler_output"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the legacy exporter's warnings
        torch.onnx.export(Text(), (torch.ones(2, 64, dtype=torch.long),), str(target / "onnx" / "text_model.onnx"),
                          input_names=["input_ids"], output_names=outputs, dynamic_axes={"input_ids": {0: "batch"}},
                          opset_version=17, dynamo=False)
        torch.onnx.export(Vision(), (torch.zeros(2, 3, size, size),), str(target / "onnx" / "vision_model.onnx"),
                          input_names=["pixel_values"], output_names=outputs,
                          dynamic_axes={"pixel_values": {0: "batch"}}, opset_version=17, dynamo=False)
    return target
