"""The typer app: registers every subcommand and the top-level options."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtools import __version__
from mmtools.cli.common import Settings
from mmtools.cli.embed import embed_images_command, embed_texts_command
from mmtools.cli.index import index_command
from mmtools.cli.planned import PASS_ANYTHING, planned_command
from mmtools.cli.search import search_command
from mmtools.cli.segment import segment_command
from mmtools.cli.serve import serve_command

app = typer.Typer(
    name="mmtools",
    help="Small composable tools for image–text retrieval and tagging, Vietnamese first. Commands read and "
         "write JSONL: data on standard output, messages on standard error.\n\n"
         "Exit status: 0 success; 1 finished but some inputs were skipped (each named on stderr); "
         "2 usage error; 3 fatal error; 130 interrupted.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts contain [brackets]; rich would read them as markup and drop them
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmtools {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr: no warnings, "
                                                              "summaries or progress.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    Settings.quiet = quiet


app.command("embed-images")(embed_images_command)
app.command("embed-texts")(embed_texts_command)
app.command("index")(index_command)
app.command("segment")(segment_command)
app.command("search")(search_command)
app.command("serve")(serve_command)
for _name in ("tag", "train", "eval"):
    app.command(_name, context_settings=PASS_ANYTHING, add_help_option=False)(planned_command(_name))


def main() -> None:
    app(prog_name="mmtools")
