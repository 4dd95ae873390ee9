#!/usr/bin/env python3
"""Offline manners, measured: what a command costs with the Hugging Face hub unreachable (simulated: HF_ENDPOINT
at a closed local port; no real host is contacted).

  cached model (hub id), hub unreachable   mmtools embed-texts --model ORG/NAME   (must not be slower than...)
  cached model, HF_HUB_OFFLINE=1            the same with the hub switched off: the no-network baseline
  local directory                           --model DIR
  plain transformers, hub unreachable       AutoModel/AutoTokenizer/AutoImageProcessor.from_pretrained(ORG/NAME,
                                            local_files_only=True): what loading a cached model costs without
                                            mmtools' snapshot-directory path (it asks the hub for optional files)
  not cached, hub unreachable               mmtools embed-texts --model ORG/OTHER: time to the error

    .venv/bin/python benchmarks/offline_manners.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
BIN = Path(sys.executable).parent
REPO_ID = "bench/tiny-siglip"
PLAIN = ("from transformers import AutoModel, AutoTokenizer, AutoImageProcessor as P; import sys; "
         "r = sys.argv[1]; AutoModel.from_pretrained(r, local_files_only=True, use_safetensors=True); "
         "AutoTokenizer.from_pretrained(r, local_files_only=True); P.from_pretrained(r, local_files_only=True)")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    result = subprocess.run(command, input="xe hơi\n", env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - started, result.returncode, result.stderr.strip().splitlines()[:1] and \
        result.stderr.strip().splitlines()[0] or ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from mmtools.models.synthetic import build_random_model, install_in_hub_cache

    with tempfile.TemporaryDirectory() as work:
        model = build_random_model(Path(work) / "model", "siglip-tiny")
        cache = Path(work) / "hub"
        install_in_hub_cache(model, cache, REPO_ID)
        base = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_CACHE": str(cache),
                "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2"}
        base.pop("HF_HUB_OFFLINE", None)
        unreachable = {**base, "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
        embed = ["mmtools", "embed-texts", "--lines", "--model"]
        cases = [
            ("cached model (hub id), hub unreachable", embed + [REPO_ID], unreachable),
            ("cached model, HF_HUB_OFFLINE=1 (baseline)", embed + [REPO_ID], {**base, "HF_HUB_OFFLINE": "1"}),
            ("local directory", embed + [str(model)], unreachable),
            ("plain transformers, hub unreachable", [sys.executable, "-c", PLAIN, REPO_ID], unreachable),
            ("not cached, hub unreachable (to the error)", embed + ["bench/not-here"], unreachable),
        ]
        print(f"{'case':46} {'median s':>9} {'min s':>7}  exit  first stderr line")
        for name, command, env in cases:
            runs = [timed(command, env) for _ in range(args.repeat)]
            seconds = [r[0] for r in runs]
            print(f"{name:46} {statistics.median(seconds):9.2f} {min(seconds):7.2f}  {runs[-1][1]:>4}  "
                  f"{runs[-1][2][:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
