"""CA reads run in threads of their own, at most so many at once even when
their callers stop waiting, in turns by namespace, and the operator's own
CAs in a lane no tenant shares."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from mtls_operator.authorities.reads import OWN, CAReads

# Long enough for a thread that should not start to have started.
SETTLE = 0.2


class Gate:
    """Reads that block until let through, and what ran at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.running = 0
        self.most = 0

    def read(self, name: str) -> Callable[[], str]:
        def read() -> str:
            with self.lock:
                self.started.append(name)
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                assert self.open.wait(10), "never let through"
                return threading.current_thread().name
            finally:
                with self.lock:
                    self.running -= 1

        return read


def test_a_read_whose_caller_stops_waiting_holds_its_thread_until_it_ends() -> None:
    async def scenario() -> None:
        reads, gate = CAReads(tenant_reads=1), Gate()
        try:
            # A tenant switching its CA: each caller gives up on its read.
            for index in range(4):
                waiting = asyncio.create_task(reads.run("a", gate.read(f"ca-{index}")))
                await asyncio.sleep(SETTLE)
                waiting.cancel()
            last = asyncio.create_task(reads.run("a", gate.read("last")))
            await asyncio.sleep(SETTLE)
            assert (gate.started, gate.most) == (["ca-0"], 1)
            gate.open.set()
            assert (await last).startswith("ca-read"), "not a thread of its own"
            assert gate.started == ["ca-0", "last"], "reads given up on were dropped"
            assert gate.most == 1
        finally:
            gate.open.set()
            reads.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_tenants_take_turns_and_the_operator_has_a_lane_of_its_own() -> None:
    async def scenario() -> None:
        reads, gate = CAReads(tenant_reads=1), Gate()
        order: list[str] = []

        async def run(namespace: str | None, name: str) -> None:
            await reads.run(namespace, gate.read(name))
            order.append(name)

        try:
            tasks = [asyncio.create_task(run("a", "a-0"))]
            await asyncio.sleep(SETTLE)  # a-0 holds the tenants' thread
            for name in ("a-1", "a-2", "a-3"):
                tasks.append(asyncio.create_task(run("a", name)))
            await asyncio.sleep(0)
            tasks.append(asyncio.create_task(run("b", "b-0")))
            tasks.append(asyncio.create_task(run(OWN, "cluster")))
            await asyncio.sleep(SETTLE)
            assert gate.started == ["a-0", "cluster"], "the cluster CA waited for a tenant"
            gate.open.set()
            await asyncio.gather(*tasks)
            # First come, first served would have b wait for all of a's.
            assert gate.started == ["a-0", "cluster", "a-1", "b-0", "a-2", "a-3"]
        finally:
            gate.open.set()
            reads.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_what_a_read_raises_is_raised_to_its_caller() -> None:
    def broken() -> None:
        raise ValueError("broken")

    async def scenario() -> None:
        reads = CAReads()
        try:
            with pytest.raises(ValueError, match=r"^broken$"):
                await reads.run("a", broken)
            assert await reads.run("a", lambda: 7) == 7, "the thread was given back"
        finally:
            reads.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
