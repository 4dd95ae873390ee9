"""Whole directories replaced atomically, also when the writing process is killed at any moment."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mmtools.atomic import atomic_directory, recover_directory, replace_directory


def _write(directory, version):
    for name in ("a.txt", "b.txt", "c.txt"):
        (directory / name).write_text(version * 1000)


def _versions(directory):
    return {(directory / name).read_text()[:1] for name in ("a.txt", "b.txt", "c.txt")}


def test_success_replaces_failure_keeps(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        _write(tmp, "1")
    assert _versions(target) == {"1"}
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            _write(tmp, "2")
            raise RuntimeError("boom")
    assert _versions(target) == {"1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_parked_copy_is_recovered_after_a_crash_between_renames(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    _write(target, "1")
    os.replace(target, tmp_path / ".model.old")  # what a fallback swap killed half-way leaves
    recover_directory(target)
    assert _versions(target) == {"1"}


def test_kill_9_never_leaves_a_mixed_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    _write(target, "0")
    script = textwrap.dedent(f"""
        import sys, pathlib
        sys.path.insert(0, {os.path.join(os.path.dirname(__file__), '..', 'src')!r})
        from mmtools.atomic import atomic_directory
        target = pathlib.Path({str(target)!r})
        for version in range(1, 10**6):
            with atomic_directory(target) as tmp:
                for name in ("a.txt", "b.txt", "c.txt"):
                    (tmp / name).write_text(str(version % 10) * 1000)
            print(version, flush=True)
    """)
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        child.stdout.readline()
        child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        recover_directory(target)
        assert len(_versions(target)) == 1


def test_replace_directory_into_a_missing_target(tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    _write(new, "7")
    replace_directory(new, tmp_path / "target")
    assert _versions(tmp_path / "target") == {"7"} and not new.exists()
