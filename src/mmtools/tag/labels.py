"""Label lists and per-label thresholds, read from files and normalised like every other text."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mmtools.errors import UsageError
from mmtools.text.normalize import normalize_text

log = logging.getLogger("mmtools")


def normalize_label(label: str) -> str:
    """One spelling per label: Unicode NFC, one tone-mark placement, tidy spaces ("hoà" and "hòa" are one)."""
    return normalize_text(label)


def unique_labels(labels: list[str], source: str = "labels") -> list[str]:
    """Normalised labels in first-seen order; duplicates (also those equal only after normalisation) merge,
    with one warning each. Empty labels are dropped."""
    seen: dict[str, str] = {}
    for raw in labels:
        label = normalize_label(raw)
        if not label:
            continue
        if label in seen:
            first = seen[label]
            how = "" if first == raw else f" (the same label as {first!r} once normalised)"
            log.warning("%s: label %r appears more than once%s; it is used once", source, raw, how)
            continue
        seen[label] = raw
    return list(seen)


def read_labels(path: str | Path) -> list[str]:
    """Labels from a UTF-8 file, one per line; blank lines and lines starting with # are ignored."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"label file {path} does not exist",
                         hint="write one label per line, e.g. printf 'xe hơi\\nđường phố\\n' > labels.txt") from None
    except IsADirectoryError:
        raise UsageError(f"label file {path} is a folder, not a file") from None
    except OSError as exc:
        raise UsageError(f"cannot read label file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"label file {path} is not valid UTF-8 (byte {exc.start + 1})",
                         hint="save it as UTF-8") from None
    lines = [line.strip() for line in text.splitlines()]
    labels = unique_labels([line for line in lines if line and not line.startswith("#")], str(path))
    if not labels:
        raise UsageError(f"label file {path} holds no labels", hint="write one label per line")
    return labels


@dataclass(frozen=True)
class Thresholds:
    """A default threshold and per-label overrides (keys are normalised labels)."""

    default: float | None = None
    per_label: dict[str, float] | None = None

    def for_label(self, label: str) -> float | None:
        if self.per_label and label in self.per_label:
            return self.per_label[label]
        return self.default


def read_thresholds(path: str | Path, known_labels: list[str] | None = None) -> dict[str, float]:
    """Per-label thresholds: a JSON object {"label": 0.3, ...}, or lines "label<whitespace>0.3".

    Labels are normalised; a label that is not in ``known_labels`` (when given) is an error, since a
    misspelt label would otherwise be silently ignored.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"threshold file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read threshold file {path}: {exc}") from None
    pairs: list[tuple[str, object, str]] = []
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"threshold file {path} is not valid JSON ({exc})") from None
        pairs = [(str(k), v, f"{path}: {k!r}") for k, v in data.items()]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
            if len(parts) != 2:
                raise UsageError(f"{path}:{number}: expected 'label<TAB>threshold', got {line!r}")
            pairs.append((parts[0], parts[1], f"{path}:{number}"))
    thresholds: dict[str, float] = {}
    for label, value, where in pairs:
        try:
            number_value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError(f"{where}: threshold {value!r} is not a number") from None
        if not 0.0 <= number_value <= 1.0:
            raise UsageError(f"{where}: threshold {number_value} is outside 0..1")
        thresholds[normalize_label(label)] = number_value
    if known_labels is not None:
        unknown = sorted(set(thresholds) - set(known_labels))
        if unknown:
            raise UsageError(f"threshold file {path} names labels the model does not have: "
                             + ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else ""),
                             hint="check their spelling against the label list")
    return thresholds


def select_tags(labels: list[str], scores, thresholds: Thresholds, top_k: int | None) -> list[dict]:
    """``[{"label", "score"}]`` best first: scores at or above each label's threshold, at most ``top_k``."""
    order = sorted(range(len(labels)), key=lambda i: -float(scores[i]))
    tags = []
    for i in order:
        score = float(scores[i])
        limit = thresholds.for_label(labels[i])
        if limit is not None and score < limit:
            continue
        tags.append({"label": labels[i], "score": round(score, 6)})
        if top_k is not None and len(tags) >= top_k:
            break
    return tags

