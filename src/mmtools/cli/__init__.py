"""The mmtools command line: one typer app, one small module per subcommand.

``main`` tries the fast path first (a search handed to a running server without loading typer); the typer
app (``mmtools.cli.app``) is imported only when needed. ``mmtools.cli.app`` as an attribute of this package
is always the Typer application (as it was when this package imported it eagerly), also after the submodule
of the same name was imported; ``from mmtools.cli.app import ...`` reaches the submodule as usual.
"""

from __future__ import annotations

import sys
import types


def main() -> None:
    from mmtools.cli.fast import try_search, try_tag

    code = try_search(sys.argv[1:])
    if code is None:
        code = try_tag(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from mmtools.cli.app import main as typer_main

    typer_main()


class _Package(types.ModuleType):
    @property
    def app(self) -> "typer.Typer":  # noqa: F821
        from mmtools.cli.app import app as typer_app

        return typer_app

    @app.setter
    def app(self, _module: object) -> None:
        pass  # the import system binds the submodule `app` here; the attribute stays the Typer application


sys.modules[__name__].__class__ = _Package

__all__ = ["app", "main"]
