"""`mmtools tag --model TAGGER` through a warm `mmtools serve`: seconds per call, the socket fast path against
the typer command talking to the same server (what every call cost before) and against no server at all.

    python benchmarks/tag_served.py [--calls 5] [--records 5]

A tiny text tagger (random towers, as the tests build) is saved in a scratch folder and served over a Unix
socket; each call is a fresh process, as a shell script's would be. Target: well under 1 s a call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, machine, median, print_table, timed

TYPER_ONLY = "import sys; from mmtools.cli.app import main; sys.argv[0] = 'mmtools'; main()"


def build_tagger(root: Path) -> Path:
    from mmtools.tag.model import TaggerModel, TaggerSpec
    from mmtools.tag.synthetic import build_text_tower
    from mmtools.tag.towers import load_towers, save_tagger, spec_for

    texts = ["phòng có wifi", "thoáng_mát sạch_sẽ", "gần chợ giá rẻ"]
    tower = build_text_tower(root / "text-tower", texts)
    towers = load_towers("text", text_model=str(tower))
    spec = spec_for(towers, TaggerSpec(labels=["wifi", "mát", "rẻ"], modality="text", fusion_dim=16, hidden_dim=16))
    save_tagger(root / "tagger", TaggerModel(spec, towers.text_model, None), towers, {})
    return root / "tagger"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--records", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="mmtools-bench-tag-") as scratch:
        root = Path(scratch)
        build_tagger(root)
        records = root / "in.jsonl"
        records.write_text("".join(json.dumps({"id": str(i), "text": "phòng có wifi gần chợ"}) + "\n"
                                   for i in range(args.records)), encoding="utf-8")
        sock = root / "s.sock"
        env = {**os.environ, "MMTOOLS_SERVER": str(sock), "OMP_NUM_THREADS": "1"}
        server = subprocess.Popen([sys.executable, "-m", "mmtools", "serve", "--socket", str(sock), "-m", "tagger"],
                                  cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            line = server.stderr.readline()
            if "listening on" not in line:
                sys.exit(f"the server did not start: {line}{server.stderr.read()}")
            tag = ["tag", "--model", "tagger", str(records)]

            def call(command: list[str], **extra) -> None:
                done = subprocess.run(command, cwd=root, env={**env, **extra}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
                if done.returncode != 0 or len(done.stdout.splitlines()) != args.records:
                    sys.exit(f"{' '.join(command)} failed: {done.stderr}")

            fast = timed(lambda: call([sys.executable, "-m", "mmtools", *tag]), repeat=args.calls)
            typer = timed(lambda: call([sys.executable, "-c", TYPER_ONLY, *tag]), repeat=args.calls)
            started = time.perf_counter()
            call([sys.executable, "-m", "mmtools", *tag], MMTOOLS_SERVER="off")
            alone = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = [Row("tag served", "fast path vs typer command, same server", median(fast), median(typer), "s",
                higher_is_better=False, target="< 1 s a call", ok=median(fast) < 1.0),
            Row("tag served", "fast path vs no server (one call)", median(fast), alone, "s", higher_is_better=False)]
    print_table(rows, f"mmtools tag --model TAGGER, {args.records} records, median of {args.calls} calls")


if __name__ == "__main__":
    main()
