"""The mmtools command line: one typer app, one small module per subcommand.

``main`` tries the fast path first (a search handed to a running server without loading typer); the typer
app is built only when needed (``mmtools.cli.app``), on first access to ``app``.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    from mmtools.cli.fast import try_search

    code = try_search(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from mmtools.cli.app import main as typer_main

    typer_main()


def __getattr__(name: str) -> Any:
    if name == "app":
        from mmtools.cli.app import app

        return app
    raise AttributeError(name)


__all__ = ["app", "main"]
