"""The command line builds only the command it runs (start-up), and that command is the one the whole app has."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmtools.cli.app import COMMANDS, GROUP_COMMANDS, build, command_word


def test_a_command_line_builds_its_command_alone_and_imports_no_other_command_module():
    code = ("import sys\nsys.argv = ['mmtools', '-q', 'embed-images', '--help']\nfrom mmtools.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('mmtools.cli.')), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Usage: mmtools embed-images" in done.stdout
    loaded = eval(done.stderr.strip().splitlines()[-1])
    assert "mmtools.cli.embed" in loaded
    assert not {"mmtools.cli.train", "mmtools.cli.search", "mmtools.cli.tagger", "mmtools.cli.serve"} & set(loaded)


def test_command_words():
    assert command_word(["-q", "search", "x"]) == "search"
    assert command_word(["--quiet", "train", "tagger"]) == "train"
    assert command_word(["--help"]) is None and command_word([]) is None and command_word(["serch"]) is None


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_alone_reads_its_options_as_the_whole_app_does(name):
    runner = CliRunner()
    whole, alone = build(), build(name)
    words = [name, "--help"]
    a, b = runner.invoke(whole, words, prog_name="mmtools"), runner.invoke(alone, words, prog_name="mmtools")
    assert a.exit_code == b.exit_code == 0 and a.output == b.output
    for sub in GROUP_COMMANDS.get(name, {}):
        a = runner.invoke(whole, [name, sub, "--help"], prog_name="mmtools")
        b = runner.invoke(alone, [name, sub, "--help"], prog_name="mmtools")
        assert a.exit_code == b.exit_code == 0 and a.output == b.output
