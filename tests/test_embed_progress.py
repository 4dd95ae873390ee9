"""Embedding as a user sees it: a bar with a total and an ETA on a terminal, none in a pipe, and a closing line."""

from __future__ import annotations

import fcntl
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

BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"^mmtools embed-(images|texts): (\d+) embedded, (\d+) skipped, \d+\.\d s$")


def env():
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


@pytest.fixture
def inputs(photos, broken_files):
    (photos / "notes.jpg").write_bytes(broken_files["text"].read_bytes())  # one that is skipped
    return photos


def test_in_a_pipe_stdout_is_only_records_and_stderr_ends_with_one_summary(inputs, siglip_dir):
    result = subprocess.run(f"mmtools embed-images photos --model {siglip_dir} --no-cache | cat", shell=True,
                            cwd=inputs.parent, env=env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr  # cat's status; the records went through the pipe
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 8 and all("embedding" in r for r in records)
    messages = result.stderr.splitlines()
    assert "\r" not in result.stderr and "item/s" not in result.stderr  # no bar off a terminal
    assert len(messages) == 2 and "notes.jpg" in messages[0]
    assert SUMMARY.match(messages[-1]).groups() == ("images", "8", "1")


def test_embed_texts_ends_with_a_summary_too(siglip_dir, tmp_path):
    result = subprocess.run(["mmtools", "embed-texts", "--lines", "--model", siglip_dir], input="xe hơi\n\ncon mèo\n",
                            cwd=tmp_path, env={**env(), "MMTOOLS_SERVER": "off"}, capture_output=True, text=True,
                            timeout=240)
    assert len(result.stdout.splitlines()) == 2
    assert SUMMARY.match(result.stderr.splitlines()[-1]), result.stderr


def test_on_a_terminal_the_bar_has_a_total_and_an_eta_and_messages_print_above_it(inputs, siglip_dir):
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty has 0 columns
    process = subprocess.Popen(["mmtools", "embed-images", "photos", "--model", siglip_dir, "--no-cache"],
                               cwd=inputs.parent, env=env(), stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    out, _ = process.communicate(timeout=240)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other side is closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    text = shown.decode()
    assert process.returncode == 1 and len(out.splitlines()) == 8
    assert "0/9 [00:00<?" in text and "9/9 [" in text  # the total, and the ETA field after '<'
    lines = [line.split("\r")[-1] for line in text.split("\r\n")]
    assert any(line.startswith("mmtools embed-images: ") and "notes.jpg" in line for line in lines)
    assert SUMMARY.match(lines[-2]).groups() == ("images", "8", "1")
