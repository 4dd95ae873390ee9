"""Splitting inputs between N processes or machines: ``--shard I/N`` takes the I-th of N parts (0-based).

An input belongs to shard ``hash(id) mod N``, with a stable hash (SHA-1 of the id's UTF-8 bytes), so the parts
are disjoint and together cover the input, whatever order the inputs come in and wherever each shard runs
(no coordination, no shared state: each process reads the same input list and keeps its part). Ids are
what embedding records carry, so the shard outputs together hold exactly the records of a single run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

from mmtools.errors import UsageError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int  # 0 <= index < count
    count: int

    def owns(self, item_id: str) -> bool:
        return shard_of(item_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(item_id: str, count: int) -> int:
    """Which of ``count`` shards ``item_id`` belongs to; the same on every machine and Python version."""
    digest = hashlib.sha1(item_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(spec: str) -> Shard:
    """``"I/N"`` with 0 <= I < N (e.g. ``$SLURM_ARRAY_TASK_ID/4`` for ``--array=0-3``)."""
    index, slash, count = spec.strip().partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise UsageError(f"--shard {spec!r} is not I/N", hint="e.g. --shard 0/4 ... --shard 3/4 (I counts from 0)")
    shard = Shard(int(index), int(count))
    if shard.count < 1 or shard.index >= shard.count:
        raise UsageError(f"--shard {spec}: I must be between 0 and N-1",
                         hint=f"the shards of {max(shard.count, 1)} are 0/{shard.count} to "
                              f"{max(shard.count, 1) - 1}/{shard.count}")
    return shard


def take_shard(items: Iterable[T], shard: Shard | None, key: Callable[[T], str]) -> Iterator[T]:
    """The items of ``shard`` (all items when ``shard`` is None), in their input order."""
    if shard is None or shard.count == 1:
        yield from items
        return
    for item in items:
        if shard.owns(key(item)):
            yield item
