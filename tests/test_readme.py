"""The guide cannot rot: every ```sh block of README.md runs, in order, in one folder holding photos/ (8 JPEGs),
captions.jsonl (their Vietnamese captions) and my-model/ (a tiny model), with MMTOOLS_MODEL pointing at a
tiny model and the hub switched off. A block preceded by `<!-- not run: REASON -->` is skipped, visibly."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PHOTOS = REPO / "tests" / "data" / "vi-photos"  # real photos and captions kept in the repository
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"(?:<!--\s*not run:\s*(?P<reason>[^>]*?)\s*-->\s*\n)?```sh\n(?P<code>.*?)```", re.S)


def blocks():
    text = README.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        found.append(pytest.param(match.group("code"), match.group("reason"), id=f"README.md:{line}"))
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, siglip_dir):
    work = tmp_path_factory.mktemp("readme")
    (work / "photos").mkdir()
    captions = {}
    for line in (PHOTOS / "captions.jsonl").read_text(encoding="utf-8").splitlines()[:8]:
        record = json.loads(line)
        shutil.copy(PHOTOS / record["path"], work / "photos" / Path(record["path"]).name)
        captions[Path(record["path"]).name] = record["captions"]
    with open(work / "captions.jsonl", "w", encoding="utf-8") as out:
        for name, texts in captions.items():
            out.write(json.dumps({"id": name, "path": f"photos/{name}", "captions": texts}, ensure_ascii=False) + "\n")
    shutil.copytree(siglip_dir, work / "my-model")
    return work


def test_the_guide_has_examples_and_says_why_any_are_not_run():
    found = blocks()
    assert len(found) >= 12
    skipped = [b.values[1] for b in found if b.values[1] is not None]
    assert all(reason.strip() for reason in skipped)
    run = "\n".join(b.values[0] for b in found if b.values[1] is None)
    for command in ("embed-images", "embed-texts", "index", "search", "segment", "models import", "models list",
                    "models info", "models remove", "--montage", "--html", "--format paths"):
        assert f"{command}" in run, f"no example of {command} is run"


def test_the_fresh_machine_commands_are_the_ones_ci_runs():
    text = README.read_text(encoding="utf-8")
    test_command = "scripts/install-system.sh ocr browser speech && scripts/install.sh --dev && .venv/bin/python -m pytest"
    assert test_command + "\n" in text
    assert ("scripts/install.sh && .venv/bin/mmtools embed-images photos/ | .venv/bin/mmtools index -o idx.faiss "
            '&& .venv/bin/mmtools search "xe hơi màu đỏ"\n') in text
    assert test_command in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("code, reason", blocks())
def test_readme_example(code, reason, workdir, siglip_dir, tmp_path_factory):
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MMTOOLS_MODEL": siglip_dir,
           "HF_HUB_OFFLINE": "1", "MMTOOLS_HOME": str(workdir / ".home"),
           "MMTOOLS_CACHE_DIR": str(workdir / ".cache"), "OMP_NUM_THREADS": "2"}
    env.pop("MMTOOLS_INDEX", None)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir, env=env, capture_output=True,
                            text=True, timeout=240)
    assert result.returncode == 0, f"{code}\n--- stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr and " error: " not in result.stderr, result.stderr
    if "--montage hits.png" in code:
        from PIL import Image

        with Image.open(workdir / "hits.png") as sheet:
            assert sheet.format == "PNG" and sheet.width > 4 * 160
        assert "<figure>" in (workdir / "hits.html").read_text(encoding="utf-8")
