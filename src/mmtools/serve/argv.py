"""A `mmtools search` command line forwarded by the fast path (mmtools.cli.fast), read by the command's own
option parser (typer's), so that there is one parser: the server builds the same request the command would.

The command line is read with the client's environment (its MMTOOLS_INDEX, MMTOOLS_DEVICE, MMTOOLS_RUNTIME),
never the server's. Anything the command draws itself or explains itself (help, a bad option, a usage error,
a table for a terminal, a contact sheet) is declined: the client then runs the typer command, which says it.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_command: list[Any] = []
_lock = threading.Lock()


class Declined(Exception):
    """The command line is left to the command itself; the message says why (for the log)."""


def _search_command() -> Any:
    with _lock:
        if not _command:
            import typer.main

            from mmtools.cli import app

            _command.append(typer.main.get_command(app).commands["search"])
        return _command[0]


def parse_search(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """The search command's parameters for ``args``, as typer's parser reads them with ``env`` as the
    environment (Declined where the parser would stop: help, a bad value, a missing value...)."""
    if any(arg in ("--help", "-h") for arg in args):
        raise Declined("help is shown by the command")
    command = _search_command()
    params = []
    for param in command.params:
        clone = copy.copy(param)
        names = param.envvar

        def from_client(_ctx: Any, names: Any = names) -> str | None:
            for name in ([names] if isinstance(names, str) else names or []):
                if env.get(name):
                    return env[name]
            return None
        clone.resolve_envvar_value = from_client  # the client's environment, not the server's
        params.append(clone)
    local = copy.copy(command)
    local.params = params
    try:
        context = local.make_context("search", list(args), resilient_parsing=False)
    except BaseException as exc:  # click's UsageError, BadParameter, Exit; typer's own
        raise Declined(f"the command line does not parse: {exc}") from None
    return dict(context.params)


def search_request(header: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(SearchRequest, what the client is to do)`` for a forwarded command line (Declined otherwise)."""
    from mmtools.cli.search import Edge, request_from_options
    from mmtools.errors import MmtoolsError

    args, env = header.get("argv"), header.get("env") or {}
    if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args) or not isinstance(env, dict):
        raise Declined("argv must be a list of strings")
    cwd = header.get("cwd")
    if not isinstance(cwd, str) or not cwd:
        raise Declined("a forwarded command line needs the client's folder")
    params = parse_search(args, {str(k): str(v) for k, v in env.items()})
    edge = Edge(cwd, bool(header.get("stdin_tty")), bool(header.get("stdout_tty")))
    try:
        request, view = request_from_options(**params, edge=edge)
    except MmtoolsError as exc:
        raise Declined(exc.message) from None
    if not view.servable:
        raise Declined("the command draws this view itself")
    return request, {"inputs": None if request.inputs is None else "lines" if request.inputs == "lines"
                     else "records", "output": view.output}
