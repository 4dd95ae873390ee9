"""Cold starts of the one-line text commands against `mmtools --help`, in the same run.

    python benchmarks/cold_start_text.py [--rounds 5]

Each round runs, as fresh processes in turn: `mmtools --help` (the baseline: the CLI's own start-up),
`echo "xe hoi mau do" | mmtools restore-accents --lines` and `echo "xe hơi màu đỏ" | mmtools segment
--lines`. The accent model is compiled into a scratch cache once before timing (what every later process
finds), so the figures are what a user sees from the second call on. The median of the rounds is kept; the
target is at most 5× `mmtools --help`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Row, machine, print_table

BIN = Path(sys.executable).parent
TARGET = 5.0


def seconds(command: list[str], text: str | None, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, input=text, text=True, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    mmtools = str(BIN / "mmtools")
    with tempfile.TemporaryDirectory(prefix="mmtools-bench-cold-") as scratch:
        env = {**os.environ, "MMTOOLS_CACHE_DIR": str(Path(scratch) / "cache"),
               "MMTOOLS_HOME": str(Path(scratch) / "home"), "PYTHONPATH": str(REPO / "src")}
        cases = {
            "help": ([mmtools, "--help"], None),
            "restore-accents --lines, one line": ([mmtools, "restore-accents", "--lines"], "xe hoi mau do\n"),
            "segment --lines, one line": ([mmtools, "segment", "--lines"], "xe hơi màu đỏ\n"),
        }
        started = time.perf_counter()
        seconds(*cases["restore-accents --lines, one line"], env)  # compiles the accent model once
        print(f"{machine()}\naccent model compiled in {time.perf_counter() - started:.1f} s (once per install)")
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (command, text) in cases.items():
                times[name].append(seconds(command, text, env))
    help_s = statistics.median(times["help"])
    rows = []
    for name in list(cases)[1:]:
        value = statistics.median(times[name])
        rows.append(Row("cold start", name, value, help_s, "s", higher_is_better=False,
                        target=f"≤ {TARGET:g}× mmtools --help", ok=value <= TARGET * help_s))
        print(f"{name}: median {value:.3f} s over {args.rounds} rounds ({value / help_s:.2f}× --help, "
              f"{help_s:.3f} s)")
    print_table(rows, "cold start of one-line text commands (baseline: mmtools --help, same run)")


if __name__ == "__main__":
    main()
