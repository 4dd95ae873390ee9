"""The trained tagger's network: a text tower, an image tower, or both, fused, with one sigmoid per label.

Fusion of the two towers (``fusion``):

* ``concat``: the pooled text and image features, projected, side by side into an MLP (the design's "early").
* ``late``: one MLP head per tower, logits averaged. Each head is also trained on its own, so a record with
  only one modality can be tagged from it (when the user asks for that).
* ``attention``: each text token attends to the image's patch or region tokens **of the same sample**
  (keys and values never cross the batch), the attended tokens are pooled over the text, and
  [pooled text, attended] goes into the MLP.

A missing modality (a listing without a photo, a photo without a description): ``concat`` and ``attention``
taggers trained with ``modality_dropout`` have a learned "missing" embedding per tower, which stands in for
the withheld tower's features (pooled and tokens) in training, for that share of the samples, and at inference
wherever a record lacks that modality. Older fused taggers, without it, need both.

This module holds only torch code; building towers from files is in ``mmtools.tag.towers``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmtools.tag.spec import FUSIONS, MODALITIES, POOLER_TEXT_TYPES, TaggerSpec  # noqa: F401


def _mlp(inputs: int, hidden: int, outputs: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, outputs))


def _scattered(values: torch.Tensor, rows_present: torch.Tensor, rows: int) -> torch.Tensor:
    """``values`` of the rows present put at their places among ``rows`` (zeros elsewhere)."""
    full = values.new_zeros((rows, *values.shape[1:]))
    return full.index_copy(0, rows_present, values)


def _projection(inputs: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, outputs), nn.LayerNorm(outputs))


class TaggerModel(nn.Module):
    """``forward(batch)`` → ``{"logits": (B, labels)}`` (plus ``text_logits`` / ``image_logits`` for late fusion).

    ``batch`` holds ``text`` (tokenizer outputs for the rows that have text, in row order), ``pixel_values``
    (for the rows that have an image), and boolean ``has_text`` / ``has_image`` of shape (B,).
    """

    def __init__(self, spec: TaggerSpec, text_tower: nn.Module | None, image_tower: nn.Module | None):
        super().__init__()
        if spec.modality not in MODALITIES or spec.fusion not in FUSIONS:
            raise ValueError(f"modality {spec.modality!r} / fusion {spec.fusion!r}")
        self.spec = spec
        labels, d = len(spec.labels), spec.fusion_dim
        self.text_tower = text_tower if spec.uses_text else None
        self.image_tower = image_tower if spec.uses_image else None
        if spec.uses_text:
            self.text_proj = _projection(spec.text_dim, d)
        if spec.uses_image:
            self.image_proj = _projection(spec.image_dim, d)
        if spec.modality != "both":
            self.head = _mlp(d, spec.hidden_dim, labels, spec.dropout)
        elif spec.fusion == "late":
            self.text_head = _mlp(d, spec.hidden_dim, labels, spec.dropout)
            self.image_head = _mlp(d, spec.hidden_dim, labels, spec.dropout)
        else:
            if spec.fusion == "attention":
                self.cross_attention = nn.MultiheadAttention(d, spec.attention_heads, dropout=0.0,
                                                             batch_first=True)
                self.attended_norm = nn.LayerNorm(d)
            self.head = _mlp(2 * d, spec.hidden_dim, labels, spec.dropout)
            if spec.learns_missing:
                self.missing_text = nn.Parameter(torch.zeros(d))
                self.missing_image = nn.Parameter(torch.zeros(d))

    # ------------------------------------------------------------------------------------------ towers
    def encode_text(self, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pooled (n, d), tokens (n, T, d) and token mask (n, T) of the text rows."""
        mask = text["attention_mask"]
        inputs = {"input_ids": text["input_ids"]}
        if self.spec.text_uses_mask:
            inputs["attention_mask"] = mask
        output = self.text_tower(**inputs)
        states = output.last_hidden_state
        if self.spec.text_pooling == "pooler" and getattr(output, "pooler_output", None) is not None:
            pooled = output.pooler_output
        elif self.spec.text_pooling == "mean":
            weights = mask.to(states.dtype).unsqueeze(-1)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        else:
            pooled = states[:, 0]
        return self.text_proj(pooled), self.text_proj(states), mask

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled (n, d) and patch/region tokens (n, N, d) of the image rows."""
        output = self.image_tower(pixel_values=pixel_values)
        states = output.last_hidden_state
        if states.dim() == 4:  # convolutional maps (n, C, h, w) → h·w region tokens
            states = states.flatten(2).transpose(1, 2)
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            pooled = states.mean(dim=1)
        elif pooled.dim() == 4:  # ResNet's global average pool: (n, C, 1, 1)
            pooled = pooled.flatten(1)
        return self.image_proj(pooled), self.image_proj(states)

    # ------------------------------------------------------------------------------------------ fusion
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        spec = self.spec
        if spec.modality == "text":
            pooled, _, _ = self.encode_text(batch["text"])
            return {"logits": self.head(pooled)}
        if spec.modality == "image":
            pooled, _ = self.encode_image(batch["pixel_values"])
            return {"logits": self.head(pooled)}
        if spec.fusion == "late":
            return self._late(batch)
        if spec.learns_missing:
            text_pooled, text_tokens, mask, image_pooled, image_tokens = self._with_stand_ins(batch)
        else:
            text_pooled, text_tokens, mask = self.encode_text(batch["text"])
            image_pooled, image_tokens = self.encode_image(batch["pixel_values"])
        if spec.fusion == "concat":
            return {"logits": self.head(torch.cat([text_pooled, image_pooled], dim=-1))}
        # Batched attention: row i's text queries see only row i's image tokens (shape (B, T, N) scores).
        attended, _ = self.cross_attention(text_tokens, image_tokens, image_tokens, need_weights=False)
        attended = self.attended_norm(attended + text_tokens)
        weights = mask.to(attended.dtype).unsqueeze(-1)
        pooled_attended = (attended * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return {"logits": self.head(torch.cat([text_pooled, pooled_attended], dim=-1))}

    def _with_stand_ins(self, batch: dict[str, Any]) -> tuple[torch.Tensor, ...]:
        """Both towers' features for every row, the learned "missing" embedding standing in where a row has
        no text or no image (and, in training, for a random ``modality_dropout`` share of the rows)."""
        has_text, has_image = batch["has_text"], batch["has_image"]
        rows = has_text.shape[0]
        d = self.spec.fusion_dim
        if self.training and self.spec.modality_dropout > 0:
            has_text, has_image = self._withhold(has_text, has_image)
        if "text" in batch:
            pooled, tokens, mask = self.encode_text(batch["text"])
            present = batch["has_text"].nonzero().squeeze(1)
            text_pooled = _scattered(pooled, present, rows)
            text_tokens = _scattered(tokens, present, rows)
            mask = _scattered(mask, present, rows)
        else:
            text_pooled = self.missing_text.new_zeros((rows, d))
            text_tokens = self.missing_text.new_zeros((rows, 1, d))
            mask = torch.zeros((rows, 1), dtype=torch.long, device=self.missing_text.device)
        if "pixel_values" in batch:
            pooled, tokens = self.encode_image(batch["pixel_values"])
            present = batch["has_image"].nonzero().squeeze(1)
            image_pooled = _scattered(pooled, present, rows)
            image_tokens = _scattered(tokens, present, rows)
        else:
            image_pooled = self.missing_image.new_zeros((rows, d))
            image_tokens = self.missing_image.new_zeros((rows, 1, d))
        # torch.where keeps both stand-ins in the graph on every step (DDP expects every parameter used).
        text_rows, image_rows = has_text.view(-1, 1), has_image.view(-1, 1)
        text_pooled = torch.where(text_rows, text_pooled, self.missing_text.to(text_pooled.dtype))
        image_pooled = torch.where(image_rows, image_pooled, self.missing_image.to(image_pooled.dtype))
        # A row without text has one token, the stand-in; a row without an image one region, likewise.
        first = torch.zeros_like(mask)
        first[:, 0] = 1
        text_tokens = torch.where(text_rows.unsqueeze(-1), text_tokens,
                                  (first.unsqueeze(-1) * self.missing_text).to(text_tokens.dtype))
        mask = torch.where(text_rows, mask, first)
        image_tokens = torch.where(image_rows.unsqueeze(-1), image_tokens,
                                   self.missing_image.to(image_tokens.dtype).expand_as(image_tokens))
        return text_pooled, text_tokens, mask, image_pooled, image_tokens

    def _withhold(self, has_text: torch.Tensor, has_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training's modality dropout: each row that has both loses its text or its image with probability
        ``modality_dropout / 2`` each (never both)."""
        both = has_text & has_image
        draw = torch.rand(has_text.shape, device=has_text.device)
        share = self.spec.modality_dropout / 2
        lose_text = both & (draw < share)
        lose_image = both & (draw >= share) & (draw < 2 * share)
        return has_text & ~lose_text, has_image & ~lose_image

    def _late(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        has_text, has_image = batch["has_text"], batch["has_image"]
        rows = has_text.shape[0]
        count = has_text.to(torch.float32) + has_image.to(torch.float32)
        out: dict[str, torch.Tensor] = {}
        total = None
        for name, present in (("text", has_text), ("image", has_image)):
            if not bool(present.any()):
                continue
            if name == "text":
                pooled = self.encode_text(batch["text"])[0]
                logits_present = self.text_head(pooled)
            else:
                pooled = self.encode_image(batch["pixel_values"])[0]
                logits_present = self.image_head(pooled)
            full = _scattered(logits_present, present.nonzero().squeeze(1), rows)
            out[f"{name}_logits"] = full
            total = full if total is None else total + full
        out["logits"] = total / count.clamp(min=1.0).unsqueeze(1).to(total.dtype)
        return out
