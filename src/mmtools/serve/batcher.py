"""Micro-batching: concurrent callers' small requests share one forward pass.

One worker thread per batcher takes whatever requests are waiting, runs them as one batch, and hands each
caller its own slice of the results. It never waits for more requests to arrive: a lone request runs at
once, and requests that arrive while a batch is running form the next one, so batching costs no latency and
grows with the load.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Sequence

_STOP = object()


class MicroBatcher:
    """``batcher(items)`` returns ``run(items)``, computed together with other threads' concurrent calls.

    ``run`` takes a list and returns a list of the same length. When a combined batch fails, each request
    is run again on its own, so one bad input fails only its own caller.
    """

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], max_batch: int = 64, name: str = "batcher"):
        self._run = run
        self.max_batch = max(1, max_batch)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name=f"mmtools-{name}", daemon=True)
        self._thread.start()
        self.batches = 0  # forward passes run, for /health and tests
        self.items = 0

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        future: Future[list[Any]] = Future()
        self._queue.put((list(items), future))
        return future.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=5)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            requests = [first]
            size = len(first[0])
            while size < self.max_batch:
                try:
                    extra = self._queue.get_nowait()
                except queue.Empty:
                    break
                if extra is _STOP:
                    self._queue.put(_STOP)
                    break
                requests.append(extra)
                size += len(extra[0])
            self._run_requests(requests)

    def _run_requests(self, requests: list[tuple[list[Any], Future]]) -> None:
        combined = [item for items, _ in requests for item in items]
        try:
            results = list(self._run(combined))
            self.batches += 1
            self.items += len(combined)
        except BaseException as exc:  # noqa: BLE001 - handed to the callers
            if len(requests) == 1:
                requests[0][1].set_exception(exc)
                return
            for request in requests:
                self._run_requests([request])
            return
        start = 0
        for items, future in requests:
            future.set_result(results[start:start + len(items)])
            start += len(items)
