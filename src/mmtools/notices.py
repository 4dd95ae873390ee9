"""Long one-off work deep in the library (an ONNX export: a minute or more, hundreds of MB) told to whoever
listens. The library never prints; the CLI listens in every command and turns what it hears into one line on
stderr and, on a terminal, a progress bar. Importing this costs nothing."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

Listener = Callable[[str, int, int], None]  # (what is happening, steps done, steps in all)
_listeners: list[Listener] = []


@contextmanager
def listen(listener: Listener) -> Iterator[None]:
    """Hear what is told while inside."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def tell(what: str, done: int, total: int) -> None:
    for listener in list(_listeners):
        listener(what, done, total)
