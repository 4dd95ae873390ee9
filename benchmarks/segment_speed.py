"""`mmtools segment` on a large file, end to end, against a plain loop over the back end, in one run.

    .venv/bin/python benchmarks/segment_speed.py [CONLLU] [--copies 10]

The input is the UD-VTB dev sentences repeated ``--copies`` times, each copy made distinct (mmtools segments
each distinct text once, which would otherwise flatter it). Times are whole processes, start-up included:
the plain loop imports underthesea and calls ``word_tokenize(line, format="text")`` on every line;
``mmtools segment --lines`` runs with ``--jobs 1`` and with the default ``--jobs 0`` (one process per CPU).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONLLU = REPO.parent / "shared" / "data" / "ud-vtb" / "vi_vtb-ud-dev.conllu"
BIN = Path(sys.executable).parent
PLAIN_LOOP = ("import sys\nfrom underthesea import word_tokenize\n"
              "for line in open(sys.argv[1], encoding='utf-8'):\n"
              "    sys.stdout.write(word_tokenize(line.rstrip('\\n'), format='text') + '\\n')\n")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("conllu", nargs="?", type=Path, default=DEFAULT_CONLLU)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds, best kept")
    args = parser.parse_args()
    sentences = [line[len("# text = "):].rstrip("\n") for line in args.conllu.open(encoding="utf-8")
                 if line.startswith("# text = ")]
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "sentences.txt"
        text.write_text("".join(f"{s} ({copy})\n" for copy in range(args.copies) for s in sentences),
                        encoding="utf-8")
        commands = {
            "plain loop (underthesea)": [sys.executable, "-c", PLAIN_LOOP, str(text)],
            "mmtools segment --jobs 1": [str(BIN / "mmtools"), "segment", "--lines", "--jobs", "1", str(text)],
            "mmtools segment (default --jobs 0)": [str(BIN / "mmtools"), "segment", "--lines", str(text)],
        }
        best = {name: float("inf") for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                best[name] = min(best[name], timed(command))
    count = len(sentences) * args.copies
    plain = best["plain loop (underthesea)"]
    print(f"{count} sentences, whole processes (start-up included), best of {args.rounds}\n")
    print(f"{'method':<38}{'seconds':>9}{'sentences/s':>13}{'vs plain':>10}")
    for name, seconds in best.items():
        print(f"{name:<38}{seconds:>9.2f}{count / seconds:>13.0f}{plain / seconds:>9.2f}×")
    default = best["mmtools segment (default --jobs 0)"]
    print(f"\n{'PASS' if default <= plain else 'FAIL'}  default mmtools segment not slower than the plain loop")


if __name__ == "__main__":
    main()
