"""Typed errors raised by the library; the CLI turns each into one line on stderr and an exit code.

Library code never prints and never exits. It raises one of these for a failure that stops the whole
operation, and reports a failure that concerns a single input (one file, one record) through a
``Problem`` handed to the caller's ``on_problem`` callback, so the rest of the work goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Exit codes, documented in README.md and the man pages.
EXIT_OK = 0
EXIT_SOME_INPUTS_FAILED = 1  # the run finished, but some inputs were skipped (each named on stderr)
EXIT_USAGE = 2  # bad options or arguments (the command-line parser's own code)
EXIT_FATAL = 3  # nothing useful could be done: missing model, unusable index, mismatched models...
EXIT_INTERRUPTED = 130


class MmtoolsError(Exception):
    """A failure that stops the operation. ``hint`` says what the user can do about it."""

    exit_code = EXIT_FATAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(MmtoolsError):
    """The arguments cannot work together (found after parsing, e.g. no query given)."""

    exit_code = EXIT_USAGE


class ModelError(MmtoolsError):
    """A model cannot be resolved, downloaded or loaded."""


class IndexFileError(MmtoolsError):
    """An index is missing, corrupt, or does not fit the embeddings or the model in use."""


class MissingDependencyError(MmtoolsError):
    """An optional package or external tool that this operation needs is not installed."""


class NotImplementedYet(MmtoolsError):
    """A registered subcommand whose work lands in a later release."""


@dataclass(frozen=True)
class Problem:
    """One input that could not be processed: ``source`` names it (a path, ``file:line`` or a record id)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


ProblemHandler = Callable[[Problem], None]
# Warnings that do not skip an input (e.g. a text truncated to the model's limit) go through the standard
# ``logging`` logger named "mmtools"; the CLI prints them on stderr.


def raise_problem(problem: Problem) -> None:
    """Default ``on_problem`` for library callers who prefer an exception to a callback."""
    raise MmtoolsError(str(problem))


# What the system said when a file could not be written, in the user's terms (not a bug to report).
_STORAGE_ERRNOS = {"ENOSPC": "the disk is full", "EDQUOT": "the disk quota is used up",
                   "EROFS": "the file system is read-only", "EACCES": "permission denied",
                   "EPERM": "operation not permitted"}
_SQLITE_STORAGE = {"database or disk is full": "the disk is full",
                   "attempt to write a readonly database": "the file or its folder is read-only",
                   "unable to open database file": "the file or its folder cannot be opened"}


def storage_error(exc: BaseException) -> MmtoolsError | None:
    """A full disk, a read-only file system or a refused permission as an error naming its cause (and the
    file, when known); None for anything else."""
    import errno as errno_names
    import sqlite3

    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno_names.errorcode.get(exc.errno, "")
        if name in _STORAGE_ERRNOS:
            verb = "cannot use" if name in ("EACCES", "EPERM") else "cannot write"
            where = f" {exc.filename}" if exc.filename else ""
            return MmtoolsError(f"{verb}{where}: {_STORAGE_ERRNOS[name]}",
                                hint="free some space, or write somewhere you may write, and run again; what "
                                     "was there before is unchanged")
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        for known, cause in _SQLITE_STORAGE.items():
            if known in text:
                return MmtoolsError(f"cannot write the index metadata: {cause} ({text})",
                                    hint="free some space, or write somewhere you may write, and run again; "
                                         "the index is unchanged")
    return None
