"""The workload controller over an in-memory API and a fake clock: a
workload that follows reloads is recorded when first seen, rolled once
per change of what it mounts (changes close together coalesce), never for
a drift repair, never while it rolls, in turns operator-wide; a workload
that does not ask, or that lives in another namespace, is never touched."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.outputs import TLS_CRT
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
    WorkloadKind,
    workloads_path,
)
from mtls_operator.pki import CertificateAuthority
from mtls_operator.policy.rollout import Mounted, digest
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Object
from unit.workloads.world import World, key

from support.objects import NAMESPACE, with_data
from support.scrape import value
from support.workloads import rolled_out, workload_body

ROLLS = "mtls_operator_workload_rolls_total"
WEB = key("web")
WEB_PATH = workloads_path(WorkloadKind.DEPLOYMENT, NAMESPACE, "web")


@pytest.fixture
def world(ecdsa_ca: CertificateAuthority) -> Iterator[World]:
    made = World(ecdsa_ca)
    try:
        yield made
    finally:
        made.close()


def mounted_secret(world: World, name: str, namespace: str = NAMESPACE) -> Mounted:
    facts = read_secret(world.kube.objects[secrets_path(namespace, name)])
    assert facts.leaf is not None
    assert facts.trust_bundle_sha256 is not None
    return Mounted.secret(name, facts.leaf.serial_number, facts.trust_bundle_sha256)


def recorded(body: Object) -> str | None:
    annotations: dict[str, str] = body["metadata"].get("annotations") or {}
    return annotations.get(MOUNTED_DIGEST_ANNOTATION)


def restarted_for(body: Object) -> str | None:
    template: dict[str, Any] = body["spec"]["template"]["metadata"]
    return (template.get("annotations") or {}).get(RESTARTED_FOR_ANNOTATION)


async def seen(world: World, name: str = "web", **options: Any) -> None:
    """A workload that follows reloads, applied and recorded at first sight."""
    world.workload(name, **options)
    await world.run()
    world.kube.writes.clear()


async def renewed_and_window_closed(world: World) -> None:
    """web follows reloads of web-tls, which is renewed; its window has closed."""
    world.issue("web-tls")
    await seen(world, secrets=["web-tls"])
    world.issue("web-tls")
    await world.run()
    world.later(5)


def test_first_sight_records_what_the_pods_mount_without_rolling(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        world.workload("web", secrets=["web-tls", "db-password"])
        assert await world.run() == [WEB, WEB], "recorded, then its own write looked at"

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]
    web = world.stored("web")
    # Only the managed Secret counts; db-password is not the operator's.
    assert recorded(web) == digest([mounted_secret(world, "web-tls")])
    assert restarted_for(web) is None
    assert world.events() == []


def test_a_renewal_rolls_the_workload_once_when_the_window_closes(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"])
        before = world.serials[(NAMESPACE, "web-tls")]
        world.issue("web-tls")  # renewed: the certificate controller's own write
        assert await world.run() == [WEB]
        assert world.patches() == [], "the window is still open"
        assert world.lane.due_at(WEB) == world.clock.time() + 5
        world.later(5)
        await world.due(WEB)
        after = world.serials[(NAMESPACE, "web-tls")]
        assert world.patches() == [WEB_PATH]
        wanted = digest([mounted_secret(world, "web-tls")])
        web = world.stored("web")
        assert restarted_for(web) == recorded(web) == wanted
        assert world.events() == [
            (
                "Deployment",
                "web",
                "CertificateRolled",
                f"rolled for Secret web-tls (serial {before} -> {after})",
            ),
            (
                "MtlsCertificate",
                "web",
                "WorkloadRolled",
                f"Deployment web rolled, whose pods mount Secret web-tls (serial {before} -> "
                f"{after})",
            ),
        ]
        # Nothing more, however long one waits.
        world.later(3600)
        assert await world.due(WEB) == []
        assert world.patches() == [WEB_PATH]

    asyncio.run(scenario())
    scraped = world.metrics.render().decode()
    assert value(scraped, ROLLS, namespace=NAMESPACE, result="success") == 1


def test_two_secrets_renewed_a_second_apart_roll_once(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        world.issue("client-tls")
        await seen(world, secrets=["web-tls", "client-tls"])
        world.issue("web-tls")
        await world.run()
        world.later(1)
        world.issue("client-tls")
        await world.run()
        # The window runs from the first change, not the last.
        assert world.lane.due_at(WEB) == world.clock.time() + 4
        world.later(4)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]
    wanted = digest([mounted_secret(world, "web-tls"), mounted_secret(world, "client-tls")])
    assert restarted_for(world.stored("web")) == wanted
    [(_, _, _, message), *on_certificates] = world.events()
    assert "Secret web-tls (serial" in message
    assert "Secret client-tls (serial" in message
    assert sorted(name for _, name, _, _ in on_certificates) == ["client", "web"]


def test_each_change_gets_a_window_of_its_own(world: World) -> None:
    serials: list[str] = []

    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"])
        serials.append(world.serials[(NAMESPACE, "web-tls")])
        for _ in range(2):
            world.later(3600)
            world.issue("web-tls")
            serials.append(world.serials[(NAMESPACE, "web-tls")])
            await world.run()
            assert world.lane.due_at(WEB) == world.clock.time() + 5
            world.later(5)
            await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH, WEB_PATH]
    # Each roll says what changed since the one before.
    assert [message for kind, _, _, message in world.events() if kind == "Deployment"] == [
        f"rolled for Secret web-tls (serial {before} -> {after})"
        for before, after in itertools.pairwise(serials)
    ]


def test_a_drift_repair_rolls_nothing(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"])
        world.relabel("web-tls")
        assert await world.run() == [], "the serial and the trust bundle are the same"
        # Looked at anyway (a restart, say), it is up to date.
        await world.controller.reconcile(WEB)
        world.later(60)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == []
    assert world.lane.due_at(WEB) is None


def test_a_damaged_secret_rolls_nothing_until_it_is_issued_again(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"])
        # Someone empties tls.crt: the pods still run the certificate they read.
        damaged = with_data(world.kube.objects[secrets_path(NAMESPACE, "web-tls")], {TLS_CRT: None})
        world.deliver_secret(world.kube.put(secrets_path(NAMESPACE, "web-tls"), damaged))
        await world.run()
        world.later(60)
        await world.due(WEB)
        await world.controller.reconcile(WEB)
        assert world.patches() == []
        world.issue("web-tls")  # the operator's repair: a new certificate
        await world.run()
        world.later(5)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]


def test_a_workload_that_does_not_ask_is_never_patched(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        world.workload("plain", secrets=["web-tls"], follows=False)
        assert await world.run() == []
        world.issue("web-tls")
        assert await world.run() == []
        await world.controller.reconcile(key("plain"))
        world.later(60)
        await world.run()

    asyncio.run(scenario())
    assert world.patches() == []
    # Kept as the one object every such workload of its kind shares.
    other = world.workload("other", follows=False)
    group = world.workloads[WorkloadKind.DEPLOYMENT]
    assert group.get((NAMESPACE, "plain")) is group.get((NAMESPACE, other["metadata"]["name"]))


def test_a_workload_that_rolls_waits_for_its_rollout_to_end(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"], replicas=2)
        # A rollout of the user's own begins: 1 of 2 pods updated.
        body = world.stored("web")
        body["metadata"]["generation"] = 2
        body["status"].update(observedGeneration=2, updatedReplicas=1)
        world.apply(body)
        world.issue("web-tls")
        await world.run()
        assert world.lane.due_at(WEB) is None, "its watch brings it back, no timer"
        world.later(30)
        await world.controller.reconcile(WEB)
        assert world.patches() == []
        body = world.stored("web")
        body["status"].update(updatedReplicas=2)
        world.apply(body)
        # Done, long after the window closed: rolled at once.
        assert WEB in await world.run()

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]
    assert restarted_for(world.stored("web")) == digest([mounted_secret(world, "web-tls")])


async def rolls_in_turns(world: World, count: int, burst: int) -> None:
    """`count` workloads, each renewed once at the same moment: `burst` of them are rolled
    when the window closes, then one a second (the rate)."""
    names = [f"app-{index}" for index in range(count)]
    keys = [key(name) for name in names]
    for name in names:
        world.issue(f"{name}-tls")
        await seen(world, name, secrets=[f"{name}-tls"])
    for name in names:
        world.issue(f"{name}-tls")
    await world.run()
    world.later(5)
    await world.due(*keys)
    assert len(world.patches()) == burst
    start = world.clock.time()
    due = [world.lane.due_at(k) for k in keys]
    later = range(1, count - burst + 1)
    assert sorted(at for at in due if at is not None) == [start + second for second in later]
    for second in later:
        world.later(1)
        await world.due(*keys)
        assert len(world.patches()) == burst + second
    assert sorted(world.patches()) == sorted(
        workloads_path(WorkloadKind.DEPLOYMENT, NAMESPACE, name) for name in names
    )


def test_rolls_take_turns_operator_wide(world: World) -> None:
    asyncio.run(rolls_in_turns(world, count=8, burst=5))


def test_a_burst_of_one_spaces_every_roll(ecdsa_ca: CertificateAuthority) -> None:
    world = World(ecdsa_ca, burst=1)
    try:
        asyncio.run(rolls_in_turns(world, count=3, burst=1))
    finally:
        world.close()


def test_a_workload_of_another_namespace_is_never_rolled(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        world.issue("web-tls", namespace="bank")
        await seen(world, secrets=["web-tls"])
        await seen(world, "vault", secrets=["web-tls"], namespace="bank")
        world.issue("web-tls")  # shop's
        assert await world.run() == [WEB]
        world.later(5)
        await world.due(WEB, key("vault", namespace="bank"))

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]


def test_every_kind_is_rolled(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        for kind in WorkloadKind:
            await seen(world, kind.value.lower(), secrets=["web-tls"], kind=kind)
        world.issue("web-tls")
        await world.run()
        world.later(5)
        await world.due(*(key(kind.value.lower(), kind) for kind in WorkloadKind))

    asyncio.run(scenario())
    assert world.patches() == [
        workloads_path(kind, NAMESPACE, kind.value.lower()) for kind in WorkloadKind
    ]


def test_a_new_trust_bundle_in_the_configmap_rolls_what_mounts_it(world: World) -> None:
    async def scenario() -> None:
        world.publish_bundle("root one")
        await seen(world, config_maps=["mtls-ca-bundle", "settings"])
        world.publish_bundle("root one")  # the same bundle written again
        assert await world.run() == []
        world.publish_bundle("root one\nroot two")
        assert await world.run() == [WEB]
        world.later(5)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]
    fingerprint = hashlib.sha256(b"root one\nroot two").hexdigest()
    assert restarted_for(world.stored("web")) == digest(
        [Mounted.trust_bundle("mtls-ca-bundle", fingerprint)]
    )
    [(kind, _, _, message)] = world.events()
    assert kind == "Deployment"
    assert message == "rolled for ConfigMap mtls-ca-bundle (a new trust bundle)"


def test_a_new_crl_beside_the_same_roots_rolls_what_mounts_it(world: World) -> None:
    """nginx reads ssl_crl only at start-up: a revocation reaches it by a roll."""

    async def scenario() -> None:
        world.publish_bundle("root one", crl="crl 1")
        await seen(world, config_maps=["mtls-ca-bundle", "settings"])
        world.publish_bundle("root one", crl="crl 2")
        assert await world.run() == [WEB]
        world.later(5)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]
    fingerprint = hashlib.sha256(b"root onecrl 2").hexdigest()
    assert restarted_for(world.stored("web")) == digest(
        [Mounted.trust_bundle("mtls-ca-bundle", fingerprint)]
    )


def test_a_workload_changed_meanwhile_is_read_again_not_rolled_blind(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"])
        world.issue("web-tls")
        await world.run()
        # Someone edits it; its watch event has not come yet.
        path = WEB_PATH
        world.kube.put(path, world.kube.objects[path])
        world.later(5)
        await world.due(WEB)

    asyncio.run(scenario())
    # Refused once (409), read again, then rolled on the version read.
    assert world.kube.writes.count(("PATCH", WEB_PATH)) == 2
    assert WEB_PATH in world.kube.reads
    assert restarted_for(world.stored("web")) == digest([mounted_secret(world, "web-tls")])


def test_a_refused_roll_is_counted_and_tried_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch = world.kube.merge_patch

    async def refused(path: str, body: Object) -> Object:
        raise ApiError(403, "Forbidden", "deployments.apps is forbidden")

    async def scenario() -> None:
        await renewed_and_window_closed(world)
        monkeypatch.setattr(world.kube, "merge_patch", refused)
        await world.due(WEB)
        assert world.lane.due_at(WEB) is not None, "tried again after a back-off"
        monkeypatch.setattr(world.kube, "merge_patch", patch)
        world.later(60)
        await world.due(WEB)

    asyncio.run(scenario())
    assert restarted_for(world.stored("web")) == digest([mounted_secret(world, "web-tls")])
    scraped = world.metrics.render().decode()
    assert value(scraped, ROLLS, namespace=NAMESPACE, result="failure") == 1
    assert value(scraped, ROLLS, namespace=NAMESPACE, result="success") == 1


def test_a_workload_deleted_before_its_roll_is_let_go(world: World) -> None:
    async def scenario() -> None:
        await renewed_and_window_closed(world)
        del world.kube.objects[WEB_PATH]  # its watch event has not come yet
        await world.due(WEB)
        assert world.lane.due_at(WEB) is None
        informer = world.workloads[WorkloadKind.DEPLOYMENT].of(NAMESPACE)
        assert informer is not None
        informer.removed((NAMESPACE, "web"))
        assert await world.run() == [WEB]

    asyncio.run(scenario())
    scraped = world.metrics.render().decode()
    assert value(scraped, ROLLS, namespace=NAMESPACE, result="failure") is None
    assert world.events() == []


def test_a_deleted_secret_rolls_nothing_until_it_is_written_again(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        await seen(world, secrets=["web-tls"])
        world.delete_secret("web-tls")
        # The workload looked at again (a change of its own): new pods could not start.
        world.apply(world.stored("web"))
        await world.run()
        world.later(60)
        await world.due(WEB)
        assert world.patches() == []
        world.issue("web-tls")  # the certificate writes it again: a new certificate
        await world.run()
        world.later(5)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]


def test_a_secret_no_longer_mounted_is_not_waited_for(world: World) -> None:
    async def scenario() -> None:
        world.issue("web-tls")
        world.issue("api-tls")
        await seen(world, secrets=["web-tls", "api-tls"])
        world.delete_secret("api-tls")
        # Its owner edits the mount away, keeping what the operator recorded.
        edited = rolled_out(workload_body("web", secrets=["web-tls"]))
        stored = world.stored("web")
        edited["metadata"]["annotations"] = stored["metadata"]["annotations"]
        edited["spec"]["template"]["metadata"] = stored["spec"]["template"]["metadata"]
        world.apply(edited)
        await world.run()
        world.kube.writes.clear()
        world.issue("web-tls")
        await world.run()
        world.later(5)
        await world.due(WEB)

    asyncio.run(scenario())
    assert world.patches() == [WEB_PATH]
