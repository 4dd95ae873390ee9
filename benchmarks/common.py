"""What the benchmarks share: the machine's description, timing, and the one results table."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared_data(*parts: str) -> Path:
    """A file under the shared data folder: beside the repository, or /work/shared (worktrees)."""
    beside = REPO.parent.joinpath("shared", "data", *parts)
    return beside if beside.exists() else Path("/work/shared/data").joinpath(*parts)


@dataclass
class Row:
    """One measured figure: mmtools against a plain baseline measured in the same run."""

    benchmark: str
    case: str
    mmtools: float
    baseline: float | None
    unit: str
    higher_is_better: bool = True
    target: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.mmtools:
            return None
        return self.mmtools / self.baseline if self.higher_is_better else self.baseline / self.mmtools


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = 0
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{time.strftime('%Y-%m-%d')}; {cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB, {gpu}; "
            f"Python {platform.python_version()}; load average {load:.2f}")


def timed(function: Callable[[], object], repeat: int = 5, warmup: int = 1) -> list[float]:
    """Seconds per call, ``repeat`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "s") or abs(value) < 1000:
        return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,.0f}"


def print_table(rows: list[Row], title: str = "Results") -> None:
    print(f"\n## {title}\n")
    print(f"| benchmark | case | mmtools | baseline | unit | mmtools vs baseline | target |")
    print("|---|---|---:|---:|---|---:|---|")
    for row in rows:
        ratio = row.ratio
        shown = "-" if ratio is None else f"{ratio:.2f}×"
        verdict = "" if row.ok is None else (" PASS" if row.ok else " FAIL")
        print(f"| {row.benchmark} | {row.case} | {format_value(row.mmtools, row.unit)} | "
              f"{format_value(row.baseline, row.unit)} | {row.unit} | {shown} | {row.target}{verdict} |")
    print("\n(mmtools vs baseline: > 1× means mmtools is better, for rates and for times alike)")
