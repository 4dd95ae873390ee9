"""The mmtools command line: one typer app, one small module per subcommand."""

from mmtools.cli.app import app, main

__all__ = ["app", "main"]
