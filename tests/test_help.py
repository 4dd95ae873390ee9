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
                     "-f, --field TEXT", "--format [auto|jsonl|table|paths]", "--montage PATH"):
        assert expected in text, expected
