"""Micro-batching: concurrent callers' small requests share one forward pass.

Leader and followers, no worker thread: a caller that finds the model idle runs the batch itself, in its
own thread (a lone request pays no hand-over between threads, which costs several milliseconds each way on a
busy machine); callers that arrive while a batch runs queue up, and when it ends one of them runs all queued
requests as the next batch. Nobody waits for more requests to arrive, so batching adds no latency and grows
with the load.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence


class MicroBatcher:
    """``batcher(items)`` returns ``run(items)``, computed together with other threads' concurrent calls.

    ``run`` takes a list and returns a list of the same length. When a combined batch fails, each request
    is run again on its own, so one bad input fails only its own caller.
    """

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], max_batch: int = 64, name: str = "batcher"):
        self._run = run
        self.max_batch = max(1, max_batch)
        self.name = name
        self._pending: deque[tuple[list[Any], Future]] = deque()
        self._cond = threading.Condition()
        self._running = False
        self.batches = 0  # forward passes run, for /health and tests
        self.items = 0

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        future: Future[list[Any]] = Future()
        with self._cond:
            self._pending.append((list(items), future))
            while self._running and not future.done():
                self._cond.wait()
            if future.done():
                return future.result()
            self._running = True  # this caller leads: it runs the queued requests, its own among them
        try:
            while not future.done():
                with self._cond:
                    requests = self._take()
                self._run_requests(requests)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()
        return future.result()

    def _take(self) -> list[tuple[list[Any], Future]]:
        requests = [self._pending.popleft()]
        size = len(requests[0][0])
        while self._pending and size + len(self._pending[0][0]) <= self.max_batch:
            request = self._pending.popleft()
            requests.append(request)
            size += len(request[0])
        return requests

    def close(self) -> None:
        """Nothing to stop (no thread of its own); kept so owners can close what they opened."""

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
