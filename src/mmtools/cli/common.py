"""What every subcommand shares: its error boundary, stderr messages, progress, and common options.

Only typer and the standard library are imported here, so that `mmtools --help` and completion stay instant.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from contextlib import contextmanager
from enum import Enum
from typing import Annotated, Iterator, Optional

import typer

from mmtools.cli.fast import silence_stdout

from mmtools.errors import (EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_INPUTS_FAILED, MmtoolsError,
                            Problem, UsageError, storage_error)

PROG = "mmtools"


class Settings:
    """Process-wide switches set by the top-level options (`mmtools -q ...`)."""

    quiet = False
    debug = bool(os.environ.get("MMTOOLS_DEBUG"))


class Reporter:
    """Writes one line per message to stderr, prefixed with the command, and counts skipped inputs."""

    def __init__(self, command: str):
        self.command = command
        self.problems = 0

    def _write(self, text: str) -> None:
        if ProgressBar.active is not None:  # above the bar, which is drawn again below
            ProgressBar.active.write(f"{PROG} {self.command}: {text}")
            return
        sys.stderr.write(f"{PROG} {self.command}: {text}\n")
        sys.stderr.flush()

    def problem(self, problem: Problem) -> None:
        self.problems += 1
        self._write(_one_line(str(problem)))

    def info(self, text: str) -> None:
        if not Settings.quiet:
            self._write(text)

    def warning(self, text: str) -> None:
        if not Settings.quiet:
            self._write(f"warning: {_one_line(text)}")

    def error(self, text: str, hint: str | None = None) -> None:
        self._write(f"error: {_one_line(text)}")
        if hint:
            self._write(f"hint: {_one_line(hint)}")

    def progress(self, description: str, total: int | None = None) -> "ProgressBar":
        return ProgressBar(description, total, enabled=sys.stderr.isatty() and not Settings.quiet)


class _ReporterLogHandler(logging.Handler):
    """Routes the library's `mmtools` logger (warnings such as truncated texts) through the reporter."""

    def __init__(self, reporter: Reporter):
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.warning(record.getMessage())


class _StepsHeard:
    """What the library tells of long one-off work (mmtools.notices: an ONNX export): its first line on stderr;
    on a terminal, a bar through its steps and its last line too."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.bar: ProgressBar | None = None
        self.outer: ProgressBar | None = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if done == 0:
            self.reporter.info(what)
            self.outer = ProgressBar.active
            self.bar = self.reporter.progress(what.split(" (", 1)[0], total)
            self.bar.set_total(total)
        elif done < total:
            if self.bar is not None:
                self.bar(1)
        else:
            if self.bar is not None:
                drawn = self.bar.enabled
                self.bar(1)  # the last step
                self.bar.close()
                ProgressBar.active, self.bar = self.outer, None
                if drawn:
                    self.reporter.info(what)


class ProgressBar:
    """A tqdm bar on stderr, only on a terminal (never in pipes, logs or cron mail). It is drawn from the first
    item (or a known total) on; while it is drawn, the reporter's messages print above it."""

    active: "ProgressBar | None" = None

    def __init__(self, description: str, total: int | None, enabled: bool):
        self._bar = None
        self._description, self._total, self._enabled = description, total, enabled

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _drawn(self):
        if self._bar is None and self._enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, desc=self._description, unit="item", file=sys.stderr,
                             dynamic_ncols=True, leave=False)
            ProgressBar.active = self
        return self._bar

    def set_total(self, total: int | None) -> None:
        """The number of items, once known: the bar then shows a percentage and an ETA."""
        if total is None or not self._enabled:
            return
        self._total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()
        else:
            self._drawn()

    def write(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    def __call__(self, count: int) -> None:
        bar = self._drawn()
        if bar is not None:
            bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.refresh()  # the last count is drawn even when it came sooner than tqdm redraws
            self._bar.close()
            self._bar = None
        if ProgressBar.active is self:
            ProgressBar.active = None


@contextmanager
def command_session(command: str) -> Iterator[Reporter]:
    """The one error boundary of a subcommand: typed errors become messages and exit codes, never tracebacks.

    Exit codes: 0 all inputs processed; 1 finished but some inputs were skipped; 2 usage error;
    3 fatal error (nothing useful could be done); 130 interrupted. A closed pipe (`| head`) ends quietly.
    """
    from mmtools.notices import listen

    reporter = Reporter(command)
    logger = logging.getLogger("mmtools")
    handler = _ReporterLogHandler(reporter)
    logger.addHandler(handler)
    logger.propagate = False
    code = EXIT_OK
    restore_signals = _stop_signals_interrupt()
    try:
        with listen(_StepsHeard(reporter)):
            yield reporter
        sys.stdout.flush()
        code = EXIT_SOME_INPUTS_FAILED if reporter.problems else EXIT_OK
    except MmtoolsError as exc:
        reporter.error(exc.message, exc.hint)
        code = exc.exit_code
    except BrokenPipeError:
        silence_stdout()
        code = EXIT_OK
    except KeyboardInterrupt as exc:
        reporter.error(f"interrupted by {exc.args[0]}" if isinstance(exc, Stopped) else "interrupted")
        code = EXIT_INTERRUPTED
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug, not a user error: say so, and how to get the details
        from mmtools.models.runtime import TORCH_HINT, torch_missing

        if (cause := storage_error(exc)) is not None:  # a full disk, a read-only folder: not a bug
            reporter.error(cause.message, cause.hint)
            code = cause.exit_code
        elif torch_missing(exc):  # the user install runs the main job on ONNX Runtime, without PyTorch
            if Settings.debug:
                traceback.print_exc(file=sys.stderr)
            reporter.error(f"mmtools {command} needs PyTorch, which this install leaves out", TORCH_HINT)
            code = EXIT_FATAL
        else:
            if Settings.debug:
                traceback.print_exc(file=sys.stderr)
            reporter.error(f"internal error: {type(exc).__name__}: {exc}",
                           None if Settings.debug else "run again with MMTOOLS_DEBUG=1 for a traceback, and "
                                                       "report it with that output")
            code = EXIT_FATAL
    finally:
        restore_signals()
        logger.removeHandler(handler)
    raise typer.Exit(code)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwound like Ctrl-C, so writers discard their temporary files (exit 130)."""


def _stop_signals_interrupt():
    """While a command runs, SIGTERM (kill, systemd, cron's end) and SIGHUP (a closed terminal) act like
    Ctrl-C. A signal the parent set to be ignored (nohup) stays ignored. Returns the undo function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, _frame):
        raise Stopped(signal.Signals(signum).name)

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, stop)

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return restore


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def require_input(inputs: list[str], what: str) -> list[str]:
    """No inputs means stdin, unless stdin is a terminal (then the user forgot the inputs)."""
    if inputs:
        return inputs
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"no {what} given and nothing on standard input",
                         hint=f"name {what} as arguments, or pipe JSONL records in")
    return ["-"]


# ------------------------------------------------------------------------------------------ shared options


class EmbeddingFormat(str, Enum):
    base64 = "base64"
    list = "list"


ModelOption = Annotated[Optional[str], typer.Option(
    "--model", "-m", envvar="MMTOOLS_MODEL", show_envvar=True,
    help="Model: a Hugging Face id, a local directory, or an alias "
         "[default: google/siglip2-base-patch16-224].")]
DeviceOption = Annotated[str, typer.Option(
    "--device", envvar="MMTOOLS_DEVICE", show_envvar=True,
    help="Where the model runs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]


class RuntimeChoice(str, Enum):
    """The values of mmtools.models.runtime.RUNTIMES (a test keeps them equal)."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"
    onnx_fp32 = "onnx-fp32"


RuntimeOption = Annotated[RuntimeChoice, typer.Option(
    "--runtime", envvar="MMTOOLS_RUNTIME", show_envvar=True, case_sensitive=False,
    help="What runs the model: auto (ONNX Runtime on a CPU when it is installed, PyTorch on a GPU), torch, "
         "onnx (ONNX Runtime, with the int8 towers where they agree with fp32: queries, and images within "
         "cosine 0.99), or onnx-fp32 (ONNX Runtime, fp32 only). The ONNX export is made on first use and cached.")]
OutputOption = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="PATH", help="Write JSONL here (atomically) instead of standard output.")]
FormatOption = Annotated[EmbeddingFormat, typer.Option(
    "--embedding-format", envvar="MMTOOLS_EMBEDDING_FORMAT", show_envvar=True,
    help="How vectors are written: base64 of little-endian float32 (compact), or a list of numbers.")]
IndexOption = Annotated[str, typer.Option(
    "--index", "-i", metavar="PATH", envvar="MMTOOLS_INDEX", show_envvar=True, help="The FAISS index file.")]


# ------------------------------------------------------------------------------------------ training options
# Shared by `train retrieval` and `train tagger` (the values are mmtools.train.engine's SCHEDULES and
# PRECISIONS; a test keeps them equal), and the data columns by `train retrieval` and `eval retrieval`.


class Schedule(str, Enum):
    cosine = "cosine"
    onecycle = "onecycle"
    constant = "constant"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


ImageColumnOption = Annotated[str, typer.Option(
    "--image-column", help="Field or CSV column with the image path (relative to the data file).")]
CaptionColumnOption = Annotated[Optional[list[str]], typer.Option(
    "--caption-column", help="Field(s) or CSV column(s) with captions (repeatable) [default: caption, "
                             "captions].")]

