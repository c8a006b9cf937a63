"""Running a test's scenario on an event loop of its own (pytest-asyncio is
not used), bounded in time, and letting ready tasks run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
    """`test()` on a new event loop; a scenario that hangs fails after `timeout`."""

    async def bounded() -> T:
        return await asyncio.wait_for(test(), timeout=timeout)

    return asyncio.run(bounded())


async def settle() -> None:
    """Let every ready task run until it waits on something."""
    for _ in range(10):
        await asyncio.sleep(0)
