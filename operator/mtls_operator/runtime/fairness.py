"""Whose work goes next. One operator serves every namespace, so the work
queue and the crypto threads take what waits in turns by tenant, not first
come first served: a namespace with thousands of keys waiting delays another
namespace's one key by at most one key of each namespace with work waiting.

Pod certificate requests are urgent: the API server deletes a request
fifteen minutes after it was made, and a pod waits for its certificate to
start. They are taken before the rest, but never more than `URGENT_STREAK`
in a row while other work waits, so that a node posting requests without
end cannot stop the certificates."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# Urgent items taken in a row while other items wait.
URGENT_STREAK = 8


@dataclass(frozen=True)
class Flow:
    """Whose work an item is: a namespace, or a part of the operator for
    work no tenant chooses (trust bundles, policies)."""

    tenant: Hashable
    urgent: bool = False


class _Turns(Generic[T]):
    """Items of many tenants; `pop` takes one from the tenant whose turn it
    is, and sends that tenant to the end of the line."""

    def __init__(self) -> None:
        self._line: deque[Hashable] = deque()
        self._waiting: dict[Hashable, deque[T]] = {}

    def __bool__(self) -> bool:
        return bool(self._line)

    def push(self, tenant: Hashable, item: T) -> None:
        waiting = self._waiting.get(tenant)
        if waiting is None:
            waiting = self._waiting[tenant] = deque()
            self._line.append(tenant)
        waiting.append(item)

    def pop(self) -> T:
        tenant = self._line.popleft()
        waiting = self._waiting[tenant]
        item = waiting.popleft()
        if waiting:
            self._line.append(tenant)
        else:
            del self._waiting[tenant]
        return item


class FairOrder(Generic[T]):
    """Items in the order they are to be served: tenants in turn, urgent
    items first (at most `URGENT_STREAK` in a row while others wait), each
    tenant's own items in the order they came."""

    def __init__(self) -> None:
        self._urgent: _Turns[T] = _Turns()
        self._normal: _Turns[T] = _Turns()
        self._streak = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, flow: Flow, item: T) -> None:
        (self._urgent if flow.urgent else self._normal).push(flow.tenant, item)
        self._size += 1

    def pop(self) -> T:
        """The next item; IndexError when there is none."""
        if self._urgent and not (self._normal and self._streak >= URGENT_STREAK):
            self._streak += 1
            turns = self._urgent
        else:
            self._streak = 0
            turns = self._normal
        item = turns.pop()
        self._size -= 1
        return item


class FairThreads:
    """CPU-bound work in a few threads, started in turns by flow: a tenant
    whose every certificate asks for an RSA-4096 key waits behind its own
    keys, not in front of everyone else's."""

    def __init__(self, threads: int, *, thread_name_prefix: str) -> None:
        self.executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix=thread_name_prefix
        )
        self._free = threads
        self._waiting: FairOrder[asyncio.Future[None]] = FairOrder()

    async def run(self, flow: Flow, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.push(flow, turn)
        self._start_next()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._finished()  # granted just as its caller gave up
            raise
        running = loop.run_in_executor(self.executor, work)
        # The thread is taken until the work is done, also when the caller
        # stops waiting for it (a thread cannot be stopped).
        running.add_done_callback(lambda _: self._finished())
        return await asyncio.shield(running)

    def _finished(self) -> None:
        self._free += 1
        self._start_next()

    def _start_next(self) -> None:
        while self._free and self._waiting:
            turn = self._waiting.pop()
            if not turn.done():  # its caller was cancelled while it waited
                self._free -= 1
                turn.set_result(None)
