"""What a stopped server costs a command: `mmtools search` and `embed-texts` against a server frozen with SIGSTOP,
beside the same commands with MMTOOLS_SERVER=off (the plain baseline), in one run.

A tiny random model and an index of 8 generated photos in a temporary folder; `mmtools serve` started on a
socket there, stopped once it answers, resumed and ended at the close.

    python benchmarks/stuck_server.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MMTOOLS = [sys.executable, "-m", "mmtools"]


def timed(command: list[str], env: dict[str, str], cwd: Path, stdin: bytes = b"") -> tuple[float, int, bytes]:
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=cwd, input=stdin, capture_output=True)
    return time.monotonic() - started, done.returncode, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from PIL import Image

    from mmtools.models.synthetic import build_random_model

    with tempfile.TemporaryDirectory(prefix="mmtools-stuck-") as folder:
        root = Path(folder)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MMTOOLS_CACHE_DIR": str(root / "cache")}
        model = build_random_model(root / "model", "siglip-tiny")
        (root / "photos").mkdir()
        for i in range(8):
            Image.new("RGB", (64, 48), (30 * i, 200 - 20 * i, 90)).save(root / "photos" / f"p{i}.jpg")
        embedded = subprocess.run([*MMTOOLS, "embed-images", "-m", str(model), "photos"], env=env, cwd=root,
                                  capture_output=True, check=True).stdout
        subprocess.run([*MMTOOLS, "index", "-o", "idx.faiss"], env=env, cwd=root, input=embedded, check=True,
                       capture_output=True)
        sock = root / "s.sock"
        server = subprocess.Popen([*MMTOOLS, "serve", "-i", "idx.faiss", "--socket", str(sock)], env=env, cwd=root,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                if sock.exists():
                    break
                time.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
            search = [*MMTOOLS, "search", "xe hơi", "-k", "3"]
            embed = [*MMTOOLS, "embed-texts", "--lines", "-m", str(model)]
            rows = []
            for name, command, stdin in (("search", search, b""), ("embed-texts", embed, b"xe hoi\n")):
                off = [timed(command, {**env, "MMTOOLS_SERVER": "off"}, root, stdin) for _ in range(args.runs)]
                server.send_signal(signal.SIGSTOP)
                try:
                    stuck = [timed(command, {**env, "MMTOOLS_SERVER": str(sock)}, root, stdin)
                             for _ in range(args.runs)]
                finally:
                    server.send_signal(signal.SIGCONT)
                same = all(result[2] == off[0][2] for result in stuck) if name == "search" else None
                rows.append((name, statistics.median(t for t, _, _ in off), statistics.median(t for t, _, _ in stuck),
                             max(t for t, _, _ in stuck), all(code == 0 for _, code, _ in stuck), same))
        finally:
            server.send_signal(signal.SIGCONT)
            server.terminate()
            server.wait(30)
    print(f"{'command':<12} {'no server (s)':>14} {'stopped server (s)':>19} {'worst':>7}  ok  same hits")
    for name, off, stuck, worst, ok, same in rows:
        print(f"{name:<12} {off:>14.2f} {stuck:>19.2f} {worst:>7.2f}  {'yes' if ok else 'NO':>3}  "
              f"{'-' if same is None else 'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
