"""Bursts of requests with a fixed number in flight, and the order in which
compared runs take turns. Standard library only: the REST client
comparison imports this in the processes whose memory it measures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

CONCURRENCY = 32
# Rounds of each compared burst: this machine's speed drifts by a third
# between minutes, so one run of each side says little.
ROUNDS = 5
T = TypeVar("T")


async def in_parallel(count: int, job: Callable[[int], Awaitable[object]]) -> float:
    """Run job(0..count-1) with CONCURRENCY at a time; seconds taken."""
    started = time.monotonic()
    indexes = iter(range(count))

    async def lane() -> None:
        for index in indexes:
            await job(index)

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return time.monotonic() - started


def in_round_order(items: Sequence[T], round_number: int) -> list[T]:
    """`items` in their order in even rounds and reversed in odd ones, so
    that no side of a comparison always runs first."""
    return list(items) if round_number % 2 == 0 else list(reversed(items))
