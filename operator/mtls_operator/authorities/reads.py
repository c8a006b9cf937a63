"""Where CA Secrets are read: in threads of their own, in turns.

Whoever writes a CA Secret chooses what reading it costs, up to the bounds
of `pki.encrypted_keys` (about half a second of a core). So CAs are read
in a small pool of threads that nothing else shares (not the event loop's
default executor, which the API client's login refresh uses too): the
operator's own CAs (the cluster CA) in a thread of their own, which no
tenant can hold up, and tenants' CAs in the rest, one namespace after
another, so that a tenant with many CAs waits for its own.

A read counts against the bound until its thread is done, also when whoever
asked stopped waiting for it (a thread cannot be stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, TypeVar, cast

T = TypeVar("T")

# Tenants' CAs read at once: each may take a core for half a second.
TENANT_READS_AT_ONCE: Final = 1
# The lane of the operator's own CAs.
OWN: Final = None

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]"]


class CAReads:
    def __init__(self, tenant_reads: int = TENANT_READS_AT_ONCE) -> None:
        self._executor = ThreadPoolExecutor(tenant_reads + 1, thread_name_prefix="ca-read")
        self._free = {True: tenant_reads, False: 1}  # by "is a tenant's"
        # Lanes (a namespace, or OWN) with reads waiting, in the order of their turns.
        self._waiting: OrderedDict[str | None, deque[_Job]] = OrderedDict()

    async def run(self, namespace: str | None, read: Callable[[], T]) -> T:
        """`read()` in a worker thread, at the turn of `namespace` (a
        tenant's CA) or of the operator's own CAs (OWN)."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(namespace, deque()).append((read, waiter))
        self._start_next()
        return cast(T, await waiter)

    def close(self) -> None:
        """Reads not started are dropped; those running finish."""
        for jobs in self._waiting.values():
            for _, waiter in jobs:
                waiter.cancel()
        self._waiting.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _start_next(self) -> None:
        started = True
        while started:
            started = False
            for lane in list(self._waiting):
                tenant = lane is not OWN
                if not self._free[tenant]:
                    continue
                jobs = self._waiting.pop(lane)
                while jobs and jobs[0][1].done():
                    jobs.popleft()  # its caller stopped waiting before its turn
                if not jobs:
                    continue
                self._start(tenant, *jobs.popleft())
                started = True
                if jobs:
                    self._waiting[lane] = jobs  # the back of the line

    def _start(self, tenant: bool, read: Callable[[], Any], waiter: asyncio.Future[Any]) -> None:
        loop = asyncio.get_running_loop()
        running = self._executor.submit(read)
        self._free[tenant] -= 1

        def done(_: Future[Any]) -> None:  # in the worker thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                loop.call_soon_threadsafe(self._finished, tenant, running, waiter)

        running.add_done_callback(done)

    def _finished(self, tenant: bool, running: Future[Any], waiter: asyncio.Future[Any]) -> None:
        self._free[tenant] += 1
        if not waiter.done():
            if running.cancelled():
                waiter.cancel()
            elif (error := running.exception()) is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(running.result())
        self._start_next()
