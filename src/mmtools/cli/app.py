"""The typer app: every subcommand and the top-level options; a process builds only the command it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from mmtools import __version__
from mmtools.cli.common import Settings
from mmtools.cli.help import ReadableGroup

# Every command, in the order help lists them: name -> (module, function). A process builds only the command
# it runs (typer reads every option of every command it is given, and each command module imports its own
# helpers: about half a second of start-up for all of them); help, completion and mistyped names get them all.
COMMANDS: dict[str, tuple[str, str]] = {
    "keyframes": ("mmtools.cli.keyframes", "keyframes_command"),
    "transcribe": ("mmtools.cli.transcribe", "transcribe_command"),
    "embed-images": ("mmtools.cli.embed", "embed_images_command"),
    "embed-texts": ("mmtools.cli.embed", "embed_texts_command"),
    "index": ("mmtools.cli.index", "index_command"),
    "segment": ("mmtools.cli.segment", "segment_command"),
    "search": ("mmtools.cli.search", "search_command"),
    "similar": ("mmtools.cli.similar", "similar_command"),
    "restore-accents": ("mmtools.cli.restore", "restore_accents_command"),
    "train": ("mmtools.cli.train", "train_app"),
    "eval": ("mmtools.cli.eval", "eval_app"),
    "tag": ("mmtools.cli.tag", "tag_command"),
    "models": ("mmtools.cli.models", "models_app"),
    "serve": ("mmtools.cli.serve", "serve_command"),
    "ocr": ("mmtools.cli.ocr", "ocr_command"),
    "duplicates": ("mmtools.cli.duplicates", "duplicates_command"),
    "caption": ("mmtools.cli.caption", "caption_command"),
    "ask": ("mmtools.cli.caption", "ask_command"),
}
# Commands of the groups that live in other modules: group -> {name: (module, function)}.
GROUP_COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "train": {"tagger": ("mmtools.cli.tagger", "train_tagger_command"),
              "captioner": ("mmtools.cli.captioner", "train_captioner_command")},
    "eval": {"tagging": ("mmtools.cli.tagger", "eval_tagging_command"),
             "captioning": ("mmtools.cli.captioner", "eval_captioning_command")},
}
QUIET = ("-q", "--quiet")


def _load(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), name)


def build(only: str | None = None) -> typer.Typer:
    """The typer app with every command, or with ``only`` that one (a name of COMMANDS)."""
    built = typer.Typer(
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
    built.callback()(main_options)
    for name, (module, function) in COMMANDS.items():
        if only is not None and name != only:
            continue
        target = _load(module, function)
        if isinstance(target, typer.Typer):
            for sub, (sub_module, sub_function) in GROUP_COMMANDS.get(name, {}).items():
                if not any(command.name == sub for command in target.registered_commands):
                    target.command(sub)(_load(sub_module, sub_function))
            built.add_typer(target, name=name)
        else:
            built.command(name)(target)
    return built


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmtools {__version__}")
        raise typer.Exit()


def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr: no warnings, "
                                                              "summaries or progress.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    Settings.quiet = quiet


def command_word(argv: list[str]) -> str | None:
    """The command a command line runs (after -q), or None where it names none (options, help, a typo)."""
    words = [word for word in argv if word not in QUIET]
    return words[0] if words and words[0] in COMMANDS else None


def main() -> None:
    import os
    import sys

    # Completion asks the whole app what there is; everything else builds the one command it runs.
    only = None if os.environ.get("_MMTOOLS_COMPLETE") else command_word(sys.argv[1:])
    build(only)(prog_name="mmtools")


_whole: list[typer.Typer] = []


def __getattr__(name: str):
    """``app``: the typer app with every command, built on first use (documentation, tests, the server's parser
    of forwarded command lines)."""
    if name == "app":
        if not _whole:
            _whole.append(build())
        return _whole[0]
    raise AttributeError(name)
