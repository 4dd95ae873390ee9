"""serve: keep models and indexes warm; answer other mmtools commands (socket) and web apps (HTTP)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import DeviceOption, RuntimeChoice, RuntimeOption, command_session
from mmtools.errors import UsageError


def serve_command(
    index: Annotated[Optional[list[str]], typer.Option(
        "--index", "-i", envvar="MMTOOLS_INDEX", show_envvar=True,
        help="An index to keep open (repeatable); the first is the HTTP API's default. Commands over the "
             "socket may use any index.")] = None,
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "-m", help="A model to keep loaded besides the indexes' own (repeatable): a retrieval model "
                              "(the first is the default of /embed and zero-shot /tag) or a trained tagger "
                              "from `mmtools train tagger` (the first is the default of /tag and "
                              "/api/extract-features).")] = None,
    device: DeviceOption = "auto",
    runtime: RuntimeOption = RuntimeChoice.auto,
    socket: Annotated[Optional[str], typer.Option(
        "--socket", envvar="MMTOOLS_SERVER", show_envvar=True,
        help="The Unix socket [default: $XDG_RUNTIME_DIR/mmtools/server.sock, else "
             "/tmp/mmtools-UID/server.sock].")] = None,
    http: Annotated[Optional[str], typer.Option(
        "--http", help="Also serve the HTTP API on HOST:PORT (PORT alone: 127.0.0.1); needs the 'serve' extra.")]
        = None,
    max_body: Annotated[int, typer.Option(
        "--max-body", min=1024, help="Largest HTTP request body in bytes.")] = 20 * 1024 * 1024,
    max_pixels: Annotated[int, typer.Option(
        "--max-pixels", min=1, help="Refuse uploaded images larger than this many pixels (every route).")]
        = 50_000_000,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", min=1, help="Most texts or images concurrent requests share in one forward pass.")] = 64,
    token: Annotated[Optional[str], typer.Option(
        "--token", envvar="MMTOOLS_TOKEN", show_envvar=True,
        help="Require 'Authorization: Bearer TOKEN' on every HTTP route but /health and the web page's shell "
             "(the page asks for it once). Needed to listen beyond loopback.")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Allow --http beyond loopback without a token (anyone who can reach the port can "
                           "search, tag and see the photos).")] = False,
) -> None:
    """Keep models and indexes warm and answer requests until SIGTERM or Ctrl-C.

    While it runs, `mmtools search`, `embed-texts` and `tag` hand their work to it over a Unix socket only
    you can use (MMTOOLS_SERVER=off makes them work alone); the socket opens once everything named is
    loaded, and a model or index that cannot be loaded ends it at once. With --http it also serves web
    apps: GET /health, POST /search, /embed, /tag, /api/extract-features, the OpenAPI page at /docs, and a
    web page at / to search the indexes and tag photos from a browser.

    Example: mmtools serve -i idx.faiss -m rooms-tagger --http 127.0.0.1:8000
    """
    import os

    # Idle OpenMP threads (torch's) sleep instead of spinning: spinning threads starve the threads answering
    # requests (a /health took 200 ms instead of 10 on a busy 2-core machine). Read when torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with command_session("serve") as report:
        from mmtools.serve.engine import Engine
        from mmtools.serve.server import parse_host_port, serve

        address = parse_host_port(http) if http else None
        if address is not None:
            from mmtools.serve.auth import is_loopback
            from mmtools.serve.http import require_fastapi

            if not token and not insecure and not is_loopback(address[0]):
                raise UsageError(f"--http {http} listens beyond this machine, and there is no token",
                                 hint="give one with --token or MMTOOLS_TOKEN (e.g. MMTOOLS_TOKEN=$(openssl rand "
                                      "-hex 16)), listen on 127.0.0.1, or allow it with --insecure")
            require_fastapi()
        engine = Engine(device=None if device == "auto" else device, models=model or [], indexes=index or [],
                        max_batch=max_batch, runtime=runtime.value, max_pixels=max_pixels)

        def ready(where) -> None:
            shown = where.socket + (f" and {where.http} (web page: {where.http}/, API docs: {where.http}/docs)"
                                    if where.http else "")
            report.info(f"listening on {shown} (pid {os.getpid()})")

        serve(engine, socket=socket, http=address, max_body_bytes=max_body, token=token or None, on_ready=ready)
        report.info("stopped")
