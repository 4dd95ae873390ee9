"""--help speaks in readable placeholders (TEXT, PATH, INTEGER, FLOAT, [a|b]), never Python types."""

import re

import pytest
import typer.main
from typer.testing import CliRunner

from mmtools.cli import app

runner = CliRunner()
ENV = {"_TYPER_FORCE_DISABLE_TERMINAL": "1", "TERMINAL_WIDTH": "200", "COLUMNS": "200", "NO_COLOR": "1"}


def _commands():
    group = typer.main.get_command(app)
    ctx = group.make_context("mmtools", [], resilient_parsing=True)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command.get_help_option(command.make_context(name, [], parent=ctx, resilient_parsing=True)):
            yield name
            for sub in getattr(command, "commands", {}):
                yield f"{name} {sub}"


@pytest.mark.parametrize("name", list(_commands()))
def test_no_python_types_in_help(name):
    result = runner.invoke(app, [*name.split(), "--help"], env=ENV, prog_name="mmtools")
    assert result.exit_code == 0, result.output
    assert not re.search(r"<(str|int|float|list|path|bool)[^>]*>", result.stdout), result.stdout


def test_search_help_placeholders():
    text = runner.invoke(app, ["search", "--help"], env=ENV, prog_name="mmtools").stdout
    assert "Usage: mmtools search [OPTIONS] [QUERIES]..." in text
    for expected in ("--image PATH", "-k, --top-k INTEGER", "--min-score FLOAT", "-i, --index PATH",
                     "-f, --field TEXT", "--format [auto|jsonl|table|paths|csv]", "--montage PATH"):
        assert expected in text, expected


def test_every_nested_command_and_parameter_has_help_and_a_man_page():
    from pathlib import Path

    group = typer.main.get_command(app)
    ctx = group.make_context("mmtools", [], resilient_parsing=True)
    models = group.get_command(ctx, "models")
    sub_ctx = models.make_context("models", [], parent=ctx, resilient_parsing=True)
    man = Path(__file__).resolve().parents[1] / "man"
    assert set(models.list_commands(sub_ctx)) == {"list", "pull", "import", "info", "export", "remove"}
    for name in models.list_commands(sub_ctx):
        command = models.get_command(sub_ctx, name)
        assert (command.help or "").strip(), name
        for param in command.get_params(command.make_context(name, [], parent=sub_ctx, resilient_parsing=True)):
            assert (getattr(param, "help", None) or "").strip(), f"models {name} {param.name}"
        assert (man / f"mmtools-models-{name}.1").exists()
