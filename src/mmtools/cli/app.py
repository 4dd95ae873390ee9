"""The typer app: registers every subcommand and the top-level options."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtools import __version__
from mmtools.cli.common import Settings
from mmtools.cli.help import ReadableGroup
from mmtools.cli.caption import ask_command, caption_command
from mmtools.cli.captioner import eval_captioning_command, train_captioner_command
from mmtools.cli.duplicates import duplicates_command
from mmtools.cli.embed import embed_images_command, embed_texts_command
from mmtools.cli.eval import eval_app
from mmtools.cli.index import index_command
from mmtools.cli.keyframes import keyframes_command
from mmtools.cli.models import models_app
from mmtools.cli.ocr import ocr_command
from mmtools.cli.restore import restore_accents_command
from mmtools.cli.search import search_command
from mmtools.cli.segment import segment_command
from mmtools.cli.similar import similar_command
from mmtools.cli.train import train_app
from mmtools.cli.transcribe import transcribe_command
from mmtools.cli.tag import tag_command
from mmtools.cli.tagger import eval_tagging_command, train_tagger_command
from mmtools.cli.serve import serve_command

app = typer.Typer(
    name="mmtools",
    cls=ReadableGroup,
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


app.command("keyframes")(keyframes_command)
app.command("transcribe")(transcribe_command)
app.command("embed-images")(embed_images_command)
app.command("embed-texts")(embed_texts_command)
app.command("index")(index_command)
app.command("segment")(segment_command)
app.command("search")(search_command)
app.command("similar")(similar_command)
app.command("restore-accents")(restore_accents_command)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.command("tag")(tag_command)
train_app.command("tagger")(train_tagger_command)
eval_app.command("tagging")(eval_tagging_command)
app.add_typer(models_app, name="models")
app.command("serve")(serve_command)
app.command("ocr")(ocr_command)
app.command("duplicates")(duplicates_command)
app.command("caption")(caption_command)
app.command("ask")(ask_command)
train_app.command("captioner")(train_captioner_command)
eval_app.command("captioning")(eval_captioning_command)


def main() -> None:
    app(prog_name="mmtools")
