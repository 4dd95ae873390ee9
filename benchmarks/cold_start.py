"""Cold starts outside the server: `mmtools tag --model TAGGER` and `mmtools eval retrieval`, each a fresh
process as a user's shell runs it, with this checkout's code against an earlier revision's (the baseline),
alternately, in the same run on the same machine.

    python benchmarks/cold_start.py [--baseline main] [--runs 3] [--photos 40] [--model DIR] [--cache DIR]

The model is SigLIP 2 base/16 at its real size with random weights (built once into --model, about 0.7 GB;
its cost is the real model's), the tagger beside it (DIR-tagger). The tagger is made from its two towers (text and image, late fusion) and tags
5 records with a caption and a photo; eval retrieval scores the first --photos shared photos against their 5
captions each. The baseline is `git archive REV src` run with PYTHONPATH pointing at it. Both run with
MMTOOLS_SERVER=off (no warm server), the same cache folder (--cache, kept between runs: the ONNX export is
made once, before timing), and
OMP_NUM_THREADS=2. Seconds are wall-clock medians; CPU seconds (user + system of the process) are shown too,
being steadier on a machine that others load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Row, machine, median, print_table, shared_data


def build_model(directory: Path) -> Path:
    if not (directory / "config.json").exists():
        from mmtools.models.synthetic import build_random_model

        print(f"building a random SigLIP 2 base in {directory} (once)", file=sys.stderr)
        build_random_model(directory, "siglip2-base")
    return directory


def build_tagger(model: Path, directory: Path) -> Path:
    if (directory / "mmtools.json").exists():
        return directory
    from mmtools.tag.model import TaggerModel, TaggerSpec
    from mmtools.tag.towers import load_towers, save_tagger, spec_for

    towers = load_towers("both", base=str(model))
    spec = spec_for(towers, TaggerSpec(labels=["bóng chày", "quần vợt", "lướt sóng", "bóng đá"], modality="both",
                                       fusion="late", fusion_dim=64, hidden_dim=64))
    save_tagger(directory, TaggerModel(spec, towers.text_model, towers.image_model), towers, {})
    return directory


def run(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision whose src/ is the baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--model", type=Path, default=Path(tempfile.gettempdir()) / "mmtools-bench-siglip2-base")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mmtools-bench-cold-cache")
    args = parser.parse_args()
    print(machine())
    model = build_model(args.model.resolve())
    with tempfile.TemporaryDirectory(prefix="mmtools-bench-cold-") as scratch:
        root = Path(scratch)
        tagger = build_tagger(model, model.parent / (model.name + "-tagger"))
        baseline = root / "baseline"
        baseline.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline, "src"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
        photos = shared_data("vi-photos")
        rows = [json.loads(line) for line in (photos / "captions.jsonl").read_text(encoding="utf-8").splitlines()]
        rows = rows[:args.photos]
        with open(root / "test.jsonl", "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps({"path": str(photos / row["path"]), "captions": row["captions"]},
                                     ensure_ascii=False) + "\n")
        with open(root / "to-tag.jsonl", "w", encoding="utf-8") as out:
            for row in rows[:5]:
                out.write(json.dumps({"id": row["id"], "text": row["captions"][0],
                                      "path": str(photos / row["path"])}, ensure_ascii=False) + "\n")
        env = {**os.environ, "MMTOOLS_SERVER": "off", "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1",
               "MMTOOLS_CACHE_DIR": str(args.cache.resolve()), "MMTOOLS_HOME": str(root / "home")}
        envs = {"mmtools": {**env, "PYTHONPATH": str(REPO / "src")},
                "baseline": {**env, "PYTHONPATH": str(baseline / "src")}}
        cases = {"tag --model TAGGER (5 records)": [sys.executable, "-m", "mmtools", "tag", "--model", str(tagger),
                                                    "to-tag.jsonl"],
                 f"eval retrieval ({len(rows)} photos)": [sys.executable, "-m", "mmtools", "eval", "retrieval",
                                                         "--data", "test.jsonl", "-m", str(model)]}
        for command in cases.values():  # untimed: the ONNX export and the caches, made once for both sides
            run(command, envs["mmtools"], root)
        results = []
        for case, command in cases.items():
            walls: dict[str, list[float]] = {"mmtools": [], "baseline": []}
            cpus: dict[str, list[float]] = {"mmtools": [], "baseline": []}
            for _ in range(args.runs):
                for side in ("baseline", "mmtools"):
                    wall, cpu = run(command, envs[side], root)
                    walls[side].append(wall)
                    cpus[side].append(cpu)
            print(f"{case}: wall {walls}, cpu {cpus}", file=sys.stderr)
            results.append(Row("cold start", case + ", wall", median(walls["mmtools"]), median(walls["baseline"]),
                               "s", higher_is_better=False, target="≥ 3× faster"))
            results.append(Row("cold start", case + ", CPU", median(cpus["mmtools"]), median(cpus["baseline"]),
                               "s", higher_is_better=False))
        print_table(results, f"Cold starts, this checkout against {args.baseline} ({args.runs} runs each, medians)")


if __name__ == "__main__":
    main()
