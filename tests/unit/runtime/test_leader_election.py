"""Leader election on a Lease, against a scripted API server: a replica
takes a free Lease, renews it every retry period, stops leading when another
holds it or when renewals fail for the renew deadline, and takes it over once
its holder has not renewed it for a lease duration."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Any

import pytest

from mtls_operator.api.paths import leases_path
from mtls_operator.runtime.leader import LeaseElection, LostLeadership

from support.clock import NOW, FakeClock
from support.fake_transport import FakeApiServer, Received
from support.loop import run

LEASE = leases_path("ops", "mtls-operator")
LEASES = leases_path("ops")
ME, OTHER = "replica-a", "replica-b"


def micro_time(seconds_after_start: float) -> str:
    moment = NOW + datetime.timedelta(seconds=seconds_after_start)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(holder: str, version: str, transitions: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "mtls-operator", "namespace": "ops", "resourceVersion": version},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": micro_time(-100),
            "renewTime": micro_time(-1),
            "leaseTransitions": transitions,
        },
    }


def election(server: FakeApiServer, clock: FakeClock) -> LeaseElection:
    return LeaseElection(
        server.client(clock),
        "ops",
        "mtls-operator",
        ME,
        lease_duration=15.0,
        renew_deadline=10.0,
        retry_period=2.0,
        clock=clock,
    )


async def until_idle(server: FakeApiServer, work: Any) -> None:
    task = asyncio.ensure_future(work)
    await server.idle()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def writes(server: FakeApiServer) -> list[Received]:
    return [r for r in server.calls() if r.method != "GET"]


def test_a_free_lease_is_created_and_held() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    server.refuse("GET", LEASE, 404, "NotFound")
    server.answer("POST", LEASES, lease(ME, "1"), status=201)

    async def scenario() -> bool:
        leader = election(server, clock)
        await leader.acquire()
        return leader.leading

    assert run(scenario)
    [created] = writes(server)
    assert created.path == LEASES
    assert created.body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": micro_time(0),
        "renewTime": micro_time(0),
        "leaseTransitions": 0,
    }


def test_the_leader_renews_every_retry_period_with_one_write() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    for version in range(1, 4):
        server.answer("GET", LEASE, lease(ME, str(2 * version)))
        server.answer("PUT", LEASE, lease(ME, str(2 * version + 1)))

    run(lambda: until_idle(server, election(server, clock).hold()))

    renewals = writes(server)
    assert [r.method for r in renewals] == ["PUT"] * 3
    assert [r.body["spec"]["renewTime"] for r in renewals] == [micro_time(t) for t in (2, 4, 6)]
    # A renewal is no transition: the holder and its acquireTime stay.
    assert {r.body["spec"]["holderIdentity"] for r in renewals} == {ME}
    assert {r.body["spec"]["leaseTransitions"] for r in renewals} == {0}
    assert {r.body["spec"]["acquireTime"] for r in renewals} == {micro_time(-100)}
    # Each PUT carries the version read, so a concurrent write fails it.
    assert [r.body["metadata"]["resourceVersion"] for r in renewals] == ["2", "4", "6"]


def test_leadership_ends_as_soon_as_another_replica_holds_the_lease() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    server.answer("GET", LEASE, lease(OTHER, "9"))
    leader = election(server, clock)
    leader.leading = True

    with pytest.raises(LostLeadership, match="held by another replica"):
        run(leader.hold)
    assert not leader.leading
    assert writes(server) == []
    assert clock.slept == [2.0]


def test_leadership_ends_when_no_renewal_succeeds_for_the_renew_deadline() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    server.refuse("GET", LEASE, 503, "ServiceUnavailable", times=5)
    leader = election(server, clock)

    with pytest.raises(LostLeadership, match="not renewed for 10s"):
        run(leader.hold)
    # One attempt each retry period, none retried within it: the deadline decides.
    assert len(server.calls("GET")) == 5
    assert clock.monotonic() == 10.0


def test_a_lost_lease_is_taken_again_once_its_holder_stops_renewing_it() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    # Held, then another replica holds it (one renewal missed: it took over).
    server.answer("GET", LEASE, lease(OTHER, "7", transitions=3))
    # Standing by: the other replica no longer renews it (same version).
    server.answer("GET", LEASE, lease(OTHER, "7", transitions=3), times=9)
    server.answer("PUT", LEASE, lease(ME, "8", transitions=4))

    async def scenario() -> bool:
        leader = election(server, clock)
        leader.leading = True
        with contextlib.suppress(LostLeadership):
            await leader.hold()
        assert not leader.leading
        await leader.acquire()
        return leader.leading

    assert run(scenario)
    [taken] = writes(server)
    # Seen first at 2 s; taken at the first look a lease duration later.
    assert taken.body["spec"]["renewTime"] == micro_time(18)
    assert taken.body["spec"]["acquireTime"] == micro_time(18)
    assert taken.body["spec"]["holderIdentity"] == ME
    assert taken.body["spec"]["leaseTransitions"] == 4


def test_a_lease_its_holder_renews_is_never_taken() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    for version in range(10, 30):
        server.answer("GET", LEASE, lease(OTHER, str(version)))

    run(lambda: until_idle(server, election(server, clock).acquire()))

    assert writes(server) == []
    assert clock.monotonic() > 15.0 * 2


def test_release_hands_the_lease_over_at_once() -> None:
    server, clock = FakeApiServer(), FakeClock(NOW)
    server.answer("GET", LEASE, lease(ME, "5"))
    server.answer("PUT", LEASE, lease("", "6"))
    leader = election(server, clock)
    leader.leading = True

    run(leader.release)

    [released] = writes(server)
    assert released.body["spec"]["holderIdentity"] is None
    assert released.body["spec"]["leaseDurationSeconds"] == 1
    assert not leader.leading
