"""serve: keep models and indexes warm; answer other mmtools commands (socket) and web apps (HTTP)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mmtools.cli.common import DeviceOption, command_session


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
) -> None:
    """Keep models and indexes warm and answer requests until SIGTERM or Ctrl-C.

    While it runs, `mmtools search`, `embed-texts` and `tag` hand their work to it over a Unix socket only
    you can use (MMTOOLS_SERVER=off makes them work alone); the socket opens once everything named is
    loaded, and a model or index that cannot be loaded ends it at once. With --http it also serves web
    apps: GET /health, POST /search, /embed, /tag, /api/extract-features, and the OpenAPI page at /docs.

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
            from mmtools.serve.http import require_fastapi

            require_fastapi()
        engine = Engine(device=None if device == "auto" else device, models=model or [], indexes=index or [],
                        max_batch=max_batch, max_pixels=max_pixels)

        def ready(where) -> None:
            shown = where.socket + (f" and {where.http} (API docs: {where.http}/docs)" if where.http else "")
            report.info(f"listening on {shown} (pid {os.getpid()})")

        serve(engine, socket=socket, http=address, max_body_bytes=max_body, on_ready=ready)
        report.info("stopped")
