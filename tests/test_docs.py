"""The generated documentation: man/ and completions/ match the CLI, every command and option is described,
--help works, and the man pages render without roff warnings.

If this fails after a change to the CLI, regenerate with: .venv/bin/python scripts/gen_docs.py
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from mmtools.cli import app

REPO = Path(__file__).resolve().parents[1]
GEN_DOCS = REPO / "scripts" / "gen_docs.py"
MAN_DIR = REPO / "man"
SUBCOMMANDS = {"segment", "embed-images", "embed-texts", "index", "search", "tag", "train", "eval"}
PLAIN_ENV = {"_TYPER_FORCE_DISABLE_TERMINAL": "1", "TERMINAL_WIDTH": "200", "COLUMNS": "200"}


def _gen_docs_module():
    """scripts/gen_docs.py, imported once (it is a script, not part of the package)."""
    name = "mmtools_gen_docs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GEN_DOCS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def _group_and_context():
    group = typer.main.get_command(app)
    return group, group.make_context("mmtools", [], resilient_parsing=True)


def _subcommands():
    group, ctx = _group_and_context()
    return [(name, group.get_command(ctx, name), ctx) for name in group.list_commands(ctx)]


def _available_commands() -> list[str]:
    is_planned = _gen_docs_module().is_planned
    return [name for name, command, _ in _subcommands() if not is_planned(command)]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS")}
    env.update(PLAIN_ENV)
    return env


# ------------------------------------------------------------------------------------- (a) up to date


def test_generated_docs_are_up_to_date():
    result = subprocess.run([sys.executable, str(GEN_DOCS), "--check"], cwd=REPO, env=_clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        "man/ or completions/ are out of date; regenerate with: .venv/bin/python scripts/gen_docs.py\n"
        + result.stderr)


# ------------------------------------------------------------------------------- (b) help everywhere


def test_every_command_and_parameter_has_help():
    group, ctx = _group_and_context()
    missing = []
    assert (group.help or "").strip(), "the top-level app has no help text"
    for param in group.get_params(ctx):
        if not param.hidden and not (getattr(param, "help", None) or "").strip():
            missing.append(f"mmtools {'/'.join(param.opts)}")
    for name, command, parent in _subcommands():
        if not (command.help or command.short_help or "").strip():
            missing.append(f"mmtools {name} (the command itself)")
        sub_ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
        for param in command.get_params(sub_ctx):
            if getattr(param, "hidden", False):
                continue
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"mmtools {name} {'/'.join(param.opts)} ({param.param_type_name})")
    assert not missing, "no help text for: " + ", ".join(missing)


# ------------------------------------------------------------------------------------ (c) --help works


@pytest.fixture
def runner(monkeypatch):
    for variable in ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in PLAIN_ENV.items():
        monkeypatch.setenv(variable, value)
    return CliRunner()


def test_top_level_help_lists_every_subcommand(runner):
    result = runner.invoke(app, ["--help"], prog_name="mmtools")
    assert result.exit_code == 0, result.output
    for name in SUBCOMMANDS:
        assert name in result.stdout, f"{name} is missing from mmtools --help"


def test_the_planned_subcommands_are_all_registered():
    assert SUBCOMMANDS <= {name for name, _, _ in _subcommands()}


@pytest.mark.parametrize("name", _available_commands())
def test_subcommand_help(runner, name):
    result = runner.invoke(app, [name, "--help"], prog_name="mmtools")
    assert result.exit_code == 0, result.output
    assert f"mmtools {name}" in result.stdout
    assert "--help" in result.stdout


# ------------------------------------------------------------------------------- (d) man pages render


def _renderer() -> list[str] | None:
    if shutil.which("groff"):
        return ["groff", "-man", "-Tutf8", "-ww"]
    if shutil.which("man"):
        return ["man", "--warnings", "-l"]
    return None


def test_a_man_page_for_every_command():
    pages = {path.name for path in MAN_DIR.glob("*.1")}
    expected = {"mmtools.1"} | {f"mmtools-{name}.1" for name, _, _ in _subcommands()}
    assert expected <= pages, f"missing man pages: {sorted(expected - pages)}"


@pytest.mark.skipif(_renderer() is None, reason="neither groff nor man is installed")
@pytest.mark.parametrize("page", sorted(path.name for path in MAN_DIR.glob("*.1")))
def test_man_page_renders_without_warnings(page):
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MAN_DISABLE_SECCOMP="1")
    result = subprocess.run(_renderer() + [str(MAN_DIR / page)], env=env, capture_output=True, timeout=60)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, stderr
    assert not stderr.strip(), f"{page}: {stderr}"
    text = re.sub(".\x08", "", result.stdout.decode("utf-8"))  # undo overstriking (bold, underline)
    assert "NAME" in text and "SYNOPSIS" in text
    if page == "mmtools.1":
        assert "xe hơi màu đỏ" in text  # the Vietnamese example survives rendering
        for name in SUBCOMMANDS:
            assert name in text


def test_planned_commands_say_they_are_not_available():
    is_planned = _gen_docs_module().is_planned
    for name, command, _ in _subcommands():
        if is_planned(command):
            assert "not available yet" in (MAN_DIR / f"mmtools-{name}.1").read_text()
