"""On a terminal, commands print what a person reads (tables, a summary and a hint): no raw JSON, no base64.
In a pipe the same commands still write JSONL. Each command runs with its standard output on a real pty."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import orjson
import pytest

from mmtools.cli.output import Column, _cut_middle, _fit

BIN = Path(sys.executable).parent
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")  # a vector, or any long blob


def env(**extra) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **extra}


def on_terminal(args: list[str], cwd: Path, columns: int = 80, **extra) -> tuple[str, str, int]:
    """Run mmtools with standard output on a pty ``columns`` wide; its screen text (escapes removed), stderr
    and exit status."""
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen([str(BIN / "mmtools"), *args], cwd=cwd, env=env(COLUMNS=str(columns), **extra),
                               stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    _, err = process.communicate(timeout=900)
    return ESCAPES.sub("", shown.decode("utf-8", "replace")).replace("\r", ""), err.decode(), process.returncode


def piped(command: str, cwd: Path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env(**extra),
                          capture_output=True, text=True, timeout=900)


def assert_readable(screen: str) -> None:
    assert screen.strip(), "nothing was shown"
    assert not BASE64_RUN.search(screen), screen
    assert not any(line.lstrip().startswith(("{", "[")) for line in screen.splitlines()), screen


@pytest.fixture(scope="module")
def library(tmp_path_factory, model_dirs):
    """Eight real photos, their embedding records and an index of them, made through a pipe."""
    import shutil

    from conftest import TEST_PHOTOS

    work = tmp_path_factory.mktemp("terminal")
    (work / "photos").mkdir()
    rows = [json.loads(line) for line in (TEST_PHOTOS / "captions.jsonl").read_text(encoding="utf-8").splitlines()[:8]]
    with open(work / "test.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            shutil.copy(TEST_PHOTOS / row["path"], work / "photos")
            out.write(json.dumps({"path": f"photos/{Path(row['path']).name}", "captions": row["captions"][:2]},
                                 ensure_ascii=False) + "\n")
    built = piped("mmtools embed-images photos | tee vectors.jsonl | mmtools index -o idx.faiss", work,
                  MMTOOLS_MODEL=model_dirs["siglip-tiny"], MMTOOLS_SERVER="off")
    assert built.returncode == 0, built.stderr
    return work


@pytest.mark.slow
def test_embed_images_shows_a_table_of_what_was_embedded_and_says_how_to_keep_the_vectors(library, siglip_dir):
    screen, err, status = on_terminal(["embed-images", "photos", "--model", siglip_dir], library)
    assert status == 0, err
    assert_readable(screen)
    assert len([line for line in screen.splitlines() if line.rstrip().endswith("32-d")]) == 8
    assert "0000019.jpg" in screen
    assert "pipe them" in err and "-o FILE" in err and "8 embedded" in err.splitlines()[-1]
    # in a pipe: the records, vectors and all, as before
    records = [orjson.loads(line) for line in (library / "vectors.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(len(r["embedding"]) > 40 for r in records)


@pytest.mark.slow
def test_index_info_is_a_table_on_a_terminal_and_one_json_object_in_a_pipe(library):
    screen, err, status = on_terminal(["index", "--info", "-o", "idx.faiss"], library)
    assert status == 0, err
    assert_readable(screen)
    fields = dict(line.split(None, 1) for line in screen.splitlines()[3:] if len(line.split(None, 1)) == 2)
    assert fields["kind"].strip() == "flat" and fields["count"].strip() == "8" and fields["dim"].strip() == "32"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", fields["created_at"])  # a date, not seconds since 1970
    done = piped("mmtools index --info -o idx.faiss | cat", library)
    info = json.loads(done.stdout)
    assert info["count"] == 8 and info["kind"] == "flat" and isinstance(info["created_at"], float)


@pytest.mark.slow
def test_eval_retrieval_shows_a_row_per_model_and_direction(library, siglip_dir):
    args = ["eval", "retrieval", "--data", "test.jsonl", "--model", siglip_dir]
    screen, err, status = on_terminal(args, library, MMTOOLS_SERVER="off")
    assert status == 0, err
    assert_readable(screen)
    assert "8 images, 16 captions" in screen
    assert "text → image" in screen and "image → text" in screen and "(chance)" in screen
    chance = next(line for line in screen.splitlines() if line.startswith("(chance)"))
    assert chance.split()[1:4] == ["12.500", "62.500", "100.000"]  # R@1/5/10 of a random ranking of 8 photos
    done = piped("mmtools " + " ".join(args) + " | cat", library, MMTOOLS_SERVER="off")
    report = json.loads(done.stdout)
    assert report["images"] == 8 and report["chance"]["R@1"] == 12.5 and len(report["results"]) == 1


@pytest.mark.slow
def test_ocr_shows_each_photo_and_its_text(tmp_path):
    if subprocess.run(["sh", "-c", "tesseract --list-langs 2>&1 | grep -qx vie"]).returncode and not os.environ.get("CI"):
        pytest.skip("Tesseract with Vietnamese data is not installed (scripts/install-system.sh ocr)")
    pytest.importorskip("pytesseract")
    from PIL import Image, ImageDraw, ImageFont

    from mmtools.ocr.signs import FONTS

    sign = Image.new("RGB", (640, 160), "white")
    font = ImageFont.truetype(next(f for f in FONTS if Path(f).exists()), 48)
    ImageDraw.Draw(sign).text((30, 50), "Cà phê sữa đá", font=font, fill="black")
    sign.save(tmp_path / "sign.png")
    screen, err, status = on_terminal(["ocr", "sign.png", "--boxes"], tmp_path)
    assert status == 0, err
    assert_readable(screen)
    done = piped("mmtools ocr sign.png | cat", tmp_path)
    read = json.loads(done.stdout)["ocr_text"]  # in a pipe, the record
    assert read.startswith("Cà phê")
    assert "sign.png" in screen and read in screen and "ocr_lines" not in screen


@pytest.mark.slow
def test_keyframes_are_a_table_per_video(tmp_path):
    pytest.importorskip("av")
    from mmtools.video.synthetic import write_video

    write_video(tmp_path / "v.mp4", [20, 20])
    screen, err, status = on_terminal(["keyframes", "v.mp4", "--per-shot", "2"], tmp_path)
    assert status == 0, err
    assert_readable(screen)
    assert screen.splitlines()[0].strip().endswith("v.mp4")  # the video heads its block
    assert len([line for line in screen.splitlines() if re.search(r"\d+\.\d\d s\s+\d+\s*$", line)]) == 4
    done = piped("mmtools keyframes v.mp4 --per-shot 2 | cat", tmp_path)
    assert len([orjson.loads(line) for line in done.stdout.splitlines()]) == 4


ALIASES = ("google/siglip-base-patch16-224", "google/siglip2-base-patch16-224", "google/siglip2-base-patch16-256",
           "google/siglip2-large-patch16-256", "google/siglip2-so400m-patch16-384")


def test_models_list_at_80_columns_keeps_the_distinguishing_ends_of_ids_and_whole_sizes(tmp_path, siglip_dir):
    imported = piped(f"mmtools models import {siglip_dir} --name photos-model-trained-on-the-summer-2024-set",
                     tmp_path, MMTOOLS_HOME=str(tmp_path / "home"))
    assert imported.returncode == 0, imported.stderr
    screen, err, status = on_terminal(["models", "list", "--all"], tmp_path, MMTOOLS_HOME=str(tmp_path / "home"))
    assert status == 0, err
    lines = screen.splitlines()
    assert max(map(len, lines)) <= 80
    names = [line.split()[0] for line in lines[2:] if line.strip()]
    for alias in ALIASES:  # whole, or cut in the middle: never at the end, which tells them apart
        assert any(n == alias or ("…" in n and alias.startswith(n.split("…")[0]) and alias.endswith(n.split("…")[1]))
                   for n in names), (alias, names)
    assert len(set(names)) == len(names)
    own = next(line for line in lines if line.startswith("photos-model"))
    assert own.split()[0].endswith("-2024-set")
    assert re.search(r"\s\d+(\.\d)? (B|KB|MB|GB)\s", own)  # its size, whole

def test_cutting_the_middle_keeps_cells_apart_and_fits_where_it_can():
    columns = [Column("name", "name", middle=True), Column("size", "size", whole=True)]
    text = [[alias, "812.3 MB"] for alias in ALIASES]
    cut, kept = _fit(text, columns, 40)
    assert kept == columns and len({row[0] for row in cut}) == len(ALIASES)
    assert all(row[0].endswith(alias[-6:]) and row[1] == "812.3 MB" for row, alias in zip(cut, ALIASES))
    assert _fit(text, columns, 200)[0] == text  # room enough: nothing is cut
    assert _cut_middle("abcdefghij", 5) == "ab…ij" and _cut_middle("abc", 5) == "abc"
    spare = [Column("name", "name"), Column("where", "where", spare=True)]
    assert _fit([["a", "x" * 90]], spare, 40) == ([["a"]], spare[:1])
