"""What shapes a trained tagger's network (``TaggerSpec``, stored in its manifest): no torch, so a tagger that
runs on ONNX Runtime (mmtools.tag.onnx_tagger) reads it without importing PyTorch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MODALITIES = ("text", "image", "both")
FUSIONS = ("concat", "late", "attention")
# Text towers whose pooled output is the trained sentence vector; for the others (BERT, RoBERTa, PhoBERT)
# the first token ([CLS] / <s>) is used, as in the design.
POOLER_TEXT_TYPES = ("clip_text_model", "siglip_text_model", "siglip2_text_model")


@dataclass
class TaggerSpec:
    """Everything that shapes the network, stored in the model's manifest."""

    labels: list[str]
    modality: str = "both"
    fusion: str = "concat"
    fusion_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.3
    attention_heads: int = 4
    text_dim: int | None = None
    image_dim: int | None = None
    text_pooling: str = "first"  # "first" token ([CLS]), "mean" of the tokens, or the tower's "pooler" output
    text_uses_mask: bool = True  # SigLIP text towers were trained without an attention mask
    # Share of training samples with one modality withheld (half text, half image), replaced by a learned
    # "missing" embedding (concat and attention fusion); 0 makes a tagger that needs both.
    modality_dropout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_text(self) -> bool:
        return self.modality in ("text", "both")

    @property
    def uses_image(self) -> bool:
        return self.modality in ("image", "both")

    @property
    def learns_missing(self) -> bool:
        """Fused towers with a learned stand-in for a missing modality."""
        return self.modality == "both" and self.fusion != "late" and self.modality_dropout > 0

    @property
    def allows_one_modality(self) -> bool:
        """A two-tower model that can still tag a record that has only one of the two."""
        return self.modality == "both" and (self.fusion == "late" or self.learns_missing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaggerSpec":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
