"""Subcommands registered now whose work lands in later releases; each says so plainly."""

from __future__ import annotations

import typer

from mmtools.cli.common import command_session
from mmtools.errors import NotImplementedYet

PLANNED = {
    "tag": "zero-shot tags from a label list, or tags from a trained multi-label tagger",
    "train": "contrastive dual-encoder training and multi-label tagger training",
    "eval": "Recall@K for retrieval and precision/recall/F1 for tagging",
}

PASS_ANYTHING = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def planned_command(name: str):
    def command(ctx: typer.Context) -> None:
        with command_session(name):
            raise NotImplementedYet(f"'{name}' is not available yet in this version of mmtools "
                                    f"(planned: {PLANNED[name]})")

    command.__doc__ = f"Not available yet: {PLANNED[name]}."
    return command
