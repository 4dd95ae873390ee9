"""Choosing the device and precision a model runs on."""

from __future__ import annotations

from mmtools.errors import UsageError

AUTO = "auto"


def choose_device(preference: str | None = None) -> str:
    """``auto`` (or None) picks cuda, then mps, then cpu; an explicit device is checked, never silently replaced."""
    import torch

    wanted = (preference or AUTO).strip().lower()
    if wanted == AUTO:
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available(torch):
            return "mps"
        return "cpu"
    kind = wanted.split(":", 1)[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {preference!r} was asked for, but no CUDA GPU is available",
                         hint="use --device cpu, or --device auto to pick the best available device")
    if kind == "mps" and not _mps_available(torch):
        raise UsageError(f"device {preference!r} was asked for, but Apple MPS is not available",
                         hint="use --device cpu, or --device auto")
    if kind not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unknown device {preference!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    return wanted


def dtype_for(device: str):
    """Half precision on GPUs (twice the throughput, same retrieval quality); full precision on the CPU."""
    import torch

    return torch.float16 if device.split(":", 1)[0] in ("cuda", "mps") else torch.float32


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())
