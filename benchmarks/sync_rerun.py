"""What a nightly re-run over an unchanged folder costs, against the first run, measured in one go.

    .venv/bin/python benchmarks/sync_rerun.py [--images 1000] [--arch siglip2-base] [--uncached]

Generates ``--images`` distinct JPEGs (640×480, like downsized phone photos) in a temporary folder, builds a
randomly initialised model of a real architecture (mmtools.models.synthetic; speed is the trained model's,
vectors are meaningless), then times the documented cron job end to end, as two real processes in a pipe:

    mmtools embed-images --root photos photos | mmtools index -o idx.faiss --sync --root photos

- **first run** (the baseline): empty index, empty embedding cache (MMTOOLS_CACHE_DIR in the temp folder);
- **re-run**: the same folder, unchanged: every file is recognised by size and mtime, its vector comes from
  the cache, the model is never loaded, and the index finds every record unchanged (no write to FAISS);
- with ``--uncached``, also a re-run with ``embed-images --no-cache`` (what a re-run cost before the cache).

Target: the re-run costs at most a tenth of the first run (PASS/FAIL; exit status 1 on FAIL).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BIN = Path(sys.executable).parent
TARGET = 0.10


def make_photos(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        sub = folder / f"{i // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)  # smooth blocks: JPEG-like sizes
        Image.fromarray(small).resize((640, 480), Image.BILINEAR).save(sub / f"photo{i:05d}.jpg", quality=88)


def timed(command: str, cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the pipeline's processes) and the index's summary."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                         text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if run.returncode != 0:
        sys.exit(f"failed ({run.returncode}): {command}\n{run.stderr}")
    summary = [line for line in run.stderr.splitlines() if "records (" in line]
    return elapsed, cpu, summary[-1].split(": ", 2)[-1].split(";")[0] if summary else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--arch", default="siglip2-base", help="synthetic architecture (siglip-tiny is quick)")
    parser.add_argument("--uncached", action="store_true", help="also time a re-run with --no-cache")
    args = parser.parse_args()

    from mmtools.models.synthetic import build_random_model

    with tempfile.TemporaryDirectory(prefix="mmtools-sync-bench-") as tmp:
        work = Path(tmp)
        make_photos(work / "photos", args.images)
        model = build_random_model(work / "model", args.arch)
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MMTOOLS_MODEL": str(model),
               "MMTOOLS_CACHE_DIR": str(work / "cache"), "MMTOOLS_DEVICE": "cpu"}
        job = "mmtools embed-images --root photos photos | mmtools index -o idx.faiss --sync --root photos"
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"{args.images} JPEGs 640x480; model: random {args.arch}")
        print(f"{'':22}{'wall s':>9}{'CPU s':>9}{'wall ratio':>12}  index summary")
        first, first_cpu, first_summary = timed(job, work, env)
        print(f"{'first run (baseline)':22}{first:9.2f}{first_cpu:9.2f}{1:12.3f}  {first_summary}")
        rerun, rerun_cpu, rerun_summary = timed(job, work, env)
        print(f"{'re-run, unchanged':22}{rerun:9.2f}{rerun_cpu:9.2f}{rerun / first:12.3f}  {rerun_summary}")
        if args.uncached:
            uncached, cpu, summary = timed(job.replace("embed-images", "embed-images --no-cache"), work, env)
            print(f"{'re-run, --no-cache':22}{uncached:9.2f}{cpu:9.2f}{uncached / first:12.3f}  {summary}")
        verdict = "PASS" if rerun <= TARGET * first else "FAIL"
        print(f"{verdict}: re-run costs {rerun / first:.1%} of the first run (target: at most {TARGET:.0%})")
        return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
