"""A warm server (socket and HTTP on a free port) running in this process for the length of a test module."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def running_server(engine: Any, socket: str, **options: Any) -> Iterator[Any]:
    """``mmtools.serve.server.serve`` on ``engine`` in a thread; yields what it reports when ready (``.http``)."""
    from mmtools.serve.server import serve

    stop, ready = threading.Event(), []
    thread = threading.Thread(target=serve, args=(engine,), kwargs=dict(
        socket=socket, http=("127.0.0.1", 0), on_ready=ready.append, stop=stop, **options))
    thread.start()
    for _ in range(600):
        if ready or not thread.is_alive():
            break
        time.sleep(0.05)
    assert ready, "server did not start"
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(10)
