"""Terms of leadership: campaign for the Lease, run the operator under
kopf's lifecycle while this process holds it, stop every write the moment
it is lost and campaign again, until SIGTERM or SIGINT. Losing the Lease
ends a term, not the process."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Protocol

import kopf
from kopf._core.engines import peering  # Identity, which kopf does not export

from mtls_operator.runtime.leader import LeaseElection
from mtls_operator.runtime.metrics import Metrics

logger = logging.getLogger(__name__)

LOST_LEASE = -1


class Term(Protocol):
    """The operator of one term, built fresh for it (nothing is kept from
    the term before)."""

    def registry(self) -> kopf.OperatorRegistry: ...

    def healthy(self) -> bool: ...

    def problems(self) -> list[str]: ...

    def halt(self) -> None:
        """Stop every write at once, without waiting."""


class Terms:
    """The operator of the current term, if this replica leads; what the
    health endpoints answer."""

    def __init__(self) -> None:
        self.current: Term | None = None

    def healthy(self) -> bool:
        return self.current is None or self.current.healthy()

    def problems(self) -> list[str]:
        """A standby is ready: it can take over."""
        return [] if self.current is None else self.current.problems()


@dataclass(frozen=True)
class Candidacy:
    """Who this process is to kopf and to the Lease; without an election,
    one term that lasts as long as the process."""

    identity: str
    election: LeaseElection | None
    lease_name: str


async def lead_while_elected(
    new_term: Callable[[], Term],
    namespaces: tuple[str, ...],
    candidacy: Candidacy,
    metrics: Metrics,
    terms: Terms,
) -> int:
    """Run terms until a signal (0) or a failure (1)."""
    election = candidacy.election
    signalled = asyncio.Event()
    try:
        while True:
            _on_signals(signalled.set)
            if election is not None:
                metrics.leader = False
                if not await _unless(signalled, election.acquire()):
                    return 0
                metrics.leader = True
            outcome = await _term(new_term(), namespaces, candidacy, metrics, terms)
            if outcome != LOST_LEASE:
                return outcome
            # Campaign again in this process: as leader or standby, with a
            # fresh runtime (nothing kept from the term that ended).
            logger.warning(
                "lost the Lease %s: stopped working, campaigning again", candidacy.lease_name
            )
    finally:
        if election is not None:
            await election.release()


async def _term(
    term: Term,
    namespaces: tuple[str, ...],
    candidacy: Candidacy,
    metrics: Metrics,
    terms: Terms,
) -> int:
    """Run `term` until kopf stops (0 after a signal, 1 if it failed) or the
    Lease is lost (LOST_LEASE)."""
    terms.current = term
    stop = asyncio.Event()
    operating = asyncio.create_task(
        kopf.operator(
            registry=term.registry(),
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            # Else kopf names itself after the user it runs as, which a uid without a
            # passwd entry (65532 in the image) does not have: getpass fails.
            identity=peering.Identity(candidacy.identity),
            stop_flag=stop,
        ),
        name="kopf",
    )
    election = candidacy.election
    holding = asyncio.create_task(election.hold(), name="lease") if election else None
    try:
        done, _ = await asyncio.wait(
            {t for t in (operating, holding) if t is not None}, return_when=asyncio.FIRST_COMPLETED
        )
        if holding is not None and holding in done:
            # Another replica may lead now: no write from here on.
            term.halt()
            metrics.leader = False
            metrics.forget_work()
            logger.error("stopping work: %s", holding.exception())
            stop.set()
            await asyncio.gather(operating, return_exceptions=True)
            return LOST_LEASE
        failure = operating.exception()
        if failure is not None:
            logger.error("stopping: the operator failed: %s", failure)
            return 1
        return 0
    finally:
        if holding is not None:
            holding.cancel()
        terms.current = None


def _on_signals(handler: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `handler` (kopf installs its own while it runs)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handler)


async def _unless(signalled: asyncio.Event, waiting: Coroutine[None, None, None]) -> bool:
    """Run `waiting`; False if a signal came first."""
    task = asyncio.create_task(waiting)
    stopper = asyncio.create_task(signalled.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    return False


def candidate_identity() -> str:
    """The pod name (or host name) plus a random part: a restarted process
    is a new candidate, not the old holder."""
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"
