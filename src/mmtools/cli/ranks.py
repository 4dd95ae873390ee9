"""Messages of a command that runs once per process under torchrun / accelerate launch.

Every rank reads the same data and would name the same skipped inputs, and print its own summary (rank 1
knows nothing of the best epoch). Only rank 0 speaks; the other ranks keep errors, which can be their own
(a GPU out of memory). Skipped inputs leave the other ranks' exit status at 0: torchrun stops every worker
as soon as one exits non-zero, which would kill rank 0 while it writes the model.
"""

from __future__ import annotations

import logging
import os
from typing import Any


def is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def launched_ranks() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


class OtherRankReporter:
    """The command's reporter on a rank other than 0: silent but for errors, counting nothing."""

    def __init__(self, reporter: Any):
        self._reporter = reporter
        self.problems = 0

    def problem(self, problem: Any) -> None:
        pass

    def info(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        pass

    def error(self, text: str, hint: str | None = None) -> None:
        self._reporter.error(text, hint)

    def progress(self, description: str, total: int | None = None) -> Any:
        return self._reporter.progress(description, total)


def speaking_rank(reporter: Any) -> Any:
    """``reporter`` on rank 0 (or without a launcher); a silent one on the other ranks."""
    if is_main_rank():
        return reporter
    logging.getLogger("mmtools").setLevel(logging.ERROR)  # the library's warnings: rank 0 says them
    return OtherRankReporter(reporter)


def skipped_summary(reporter: Any, output: str) -> None:
    """One closing line when inputs were skipped, so that exit status 1 does not read as a crash."""
    if reporter.problems:
        count = reporter.problems
        launcher = (" (torchrun reports it as a failed worker; the run itself succeeded)"
                    if launched_ranks() > 1 else "")
        reporter.info(f"training finished and {output} is complete; exit status 1 only says that {count} "
                      f"input{'s were' if count != 1 else ' was'} skipped (named above){launcher}")
