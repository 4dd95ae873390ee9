"""Readable placeholders in --help, man pages and usage lines: TEXT, PATH, INTEGER, FLOAT, [a|b|c], QUERIES.

typer 0.2x shows Python types (`<str>`, `<list[str]>`, `<int range>`). The app's group class below gives
every parameter that has no explicit ``metavar`` a readable one when the command tree is built, so each
command written later gets them without doing anything. Options whose value is a path but whose annotation
is ``str`` say so with ``metavar="PATH"`` (see the shared options in cli/common.py).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from typer.core import TyperArgument, TyperGroup

NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN"}
# Text-typed options that, by their name, always hold a file or folder (an explicit metavar still wins).
PATH_NAMES = {"output", "index", "root", "image", "path", "directory", "dir", "plot", "montage", "html",
              "log_dir", "checkpoint", "labels", "data", "train_data", "val_data", "vncorenlp_dir", "dict"}


def readable_metavar(param: Any) -> str | None:
    """The placeholder for an option's value (None for flags), or an argument's name in capitals."""
    if isinstance(param, TyperArgument):
        return param.name.upper() if param.name else None
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None) if descriptor is not None else None
    if choices:
        return "[" + "|".join(str(c.value if isinstance(c, Enum) else c) for c in choices) + "]"
    annotation = getattr(descriptor, "annotation", None)
    args = getattr(annotation, "__args__", None)
    if getattr(annotation, "__origin__", None) in (list, tuple) and args:
        annotation = args[0]
    if descriptor is not None and getattr(descriptor, "is_path", False):
        return "PATH"
    if isinstance(annotation, type):
        if annotation is str and param.name in PATH_NAMES:
            return "PATH"
        if annotation in NAMES:
            return NAMES[annotation]
        if issubclass(annotation, Enum):
            return "[" + "|".join(str(m.value) for m in annotation) + "]"
        return annotation.__name__.upper()
    return "VALUE"


def give_readable_metavars(command: Any) -> None:
    """Set a readable metavar on every parameter of ``command`` (and its subcommands) that lacks one."""
    for param in command.params:
        if param.metavar is None:
            metavar = readable_metavar(param)
            if metavar is not None:
                param.metavar = metavar
        if isinstance(param, TyperArgument):
            # typer appends the Python type after an argument's name even when a metavar is set.
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
    for sub in getattr(command, "commands", {}).values():
        give_readable_metavars(sub)


class ReadableGroup(TyperGroup):
    """The app's group: its whole command tree gets readable metavars as soon as it is built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        give_readable_metavars(self)
