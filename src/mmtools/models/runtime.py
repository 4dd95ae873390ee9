"""Choosing what runs a model's forward passes: PyTorch or ONNX Runtime, behind the same Encoder.

``auto`` (the default) runs ONNX Runtime on CPUs when it is installed (the ``onnx`` extra) and PyTorch on
GPUs; ``torch`` always runs PyTorch; ``onnx`` runs ONNX Runtime, with the int8 text tower on the query path
where it agrees with fp32 (mmtools.models.onnx_export); ``onnx-fp32`` runs ONNX Runtime in fp32 only.

Deciding costs no torch import: whether a GPU may be present is read from the system (an NVIDIA device node,
Apple silicon), so a CPU-only query path never loads torch at all.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from mmtools.errors import UsageError

RUNTIMES = ("auto", "torch", "onnx", "onnx-fp32")
ENV = "MMTOOLS_RUNTIME"
INSTALL_HINT = 'install ONNX Runtime (pip install "mmtools[onnx]"), or use --runtime torch'


TORCH_HINT = "install PyTorch: scripts/install.sh --with-torch (its CPU build, pinned), or pip install 'mmtools[torch]'"


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (asked without importing it). The user install leaves it out: the
    main job runs on ONNX Runtime; training, exports from PyTorch models, taggers and captioners need it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def torch_missing(exc: BaseException) -> bool:
    """Whether ``exc`` is PyTorch (or transformers' PyTorch side) missing from this install."""
    if torch_installed() or not isinstance(exc, ImportError):
        return False
    return exc.name in ("torch", "torchvision") or "torch" in str(exc).lower()


@dataclass(frozen=True)
class Runtime:
    """What a model is to run on: ``engine`` "torch" or "onnx"; ``int8_queries``: may the query path use the
    int8 text tower (only where its agreement with fp32 was measured to hold)."""

    engine: str
    int8_queries: bool = False

    @property
    def name(self) -> str:
        if self.engine == "torch":
            return "torch"
        return "onnx" if self.int8_queries else "onnx-fp32"


TORCH = Runtime("torch")


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def choose_runtime(preference: str | None = None, device: str | None = None) -> Runtime:
    """``preference`` (else MMTOOLS_RUNTIME, else auto) for a model on ``device`` (auto, cpu, cuda...)."""
    wanted = (preference or os.environ.get(ENV) or "auto").strip().lower()
    if wanted not in RUNTIMES:
        raise UsageError(f"unknown runtime {wanted!r}", hint="use " + ", ".join(RUNTIMES))
    kind = (device or os.environ.get("MMTOOLS_DEVICE") or "auto").strip().lower().split(":", 1)[0]
    if wanted == "torch":
        return TORCH
    if wanted == "auto":
        on_cpu = kind == "cpu" or (kind == "auto" and not accelerator_present())
        onnx_ok = onnxruntime_installed() and (on_cpu or not torch_installed())
        return Runtime("onnx", int8_queries=True) if onnx_ok else TORCH
    if kind not in ("auto", "cpu"):
        raise UsageError(f"--runtime {wanted} runs on the CPU, but device {device!r} was asked for",
                         hint="use --runtime torch (or auto) for a GPU, or --device cpu")
    if not onnxruntime_installed():
        raise UsageError(f"--runtime {wanted} needs ONNX Runtime, which is not installed", hint=INSTALL_HINT)
    return Runtime("onnx", int8_queries=wanted == "onnx")


def accelerator_present() -> bool:
    """Whether a GPU PyTorch could use may be here (then ``auto`` leaves the choice to PyTorch)."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return True  # Apple silicon: MPS
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd"))


def available_cores() -> int:
    """The CPU cores this process may use: its affinity, capped by a cgroup CPU quota (containers, systemd)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota + 0.5)))
    return max(1, cores)


def physical_cores() -> int:
    """The physical cores among those this process may use (SMT siblings count once), capped by a cgroup
    quota: what ONNX Runtime's intra-op threads should number, since two threads on one core's siblings only
    fight over its vector units."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return available_cores()
    cores: set[str] = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            siblings = str(cpu)  # no topology (not Linux, a restricted /sys): every CPU a core
        cores.add(siblings)
    count = max(1, len(cores))
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, int(quota + 0.5)))
    return count


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
