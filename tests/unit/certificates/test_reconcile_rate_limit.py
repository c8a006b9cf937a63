"""Rate-limited re-issuance, through one real Reconciler over an in-memory API:
after a CA swap, certificates beyond the burst must be re-issued in their turn."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import CertificateRef, certificates_path
from mtls_operator.certificates.controller import NAME, CertificateController
from mtls_operator.pki import CertificateAuthority
from mtls_operator.runtime.core import Runtime

from support import objects
from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, certificate_controller, delivered
from support.objects import MIN_DURATION, NAMESPACE, certificate_spec, secret_body

NAMES = ("a", "b", "c")


def certificate_body(name: str) -> dict[str, Any]:
    return objects.certificate_body(name, secretName=f"{name}-tls")


def issuer_of(kube: FakeKube, name: str) -> str | None:
    leaf = read_secret(kube.objects[secrets_path(NAMESPACE, f"{name}-tls")]).leaf
    return leaf.issuer if leaf else None


def secret_revision(kube: FakeKube, name: str) -> int:
    return read_secret(kube.objects[secrets_path(NAMESPACE, f"{name}-tls")]).revision


@contextmanager
def world(
    ca: CertificateAuthority, old_ca: CertificateAuthority, clock: FakeClock
) -> Iterator[tuple[FakeKube, Runtime, CertificateController]]:
    """Three certificates whose Secrets were issued by `old_ca`, while the
    cluster CA is now `ca`; one re-issuance per second."""
    kube = FakeKube()
    with certificate_controller(
        kube, {CLUSTER_CA: ca}, clock, min_duration=MIN_DURATION, reissue_rate=1.0
    ) as (runtime, controller):
        for name in NAMES:
            kube.put(certificates_path(NAMESPACE, name), certificate_body(name))
            delivered(
                controller.store.certificates, kube.objects[certificates_path(NAMESPACE, name)]
            )
            owner = CertificateRef(NAMESPACE, name, f"uid-{name}")
            secret = secret_body(certificate_spec(secretName=f"{name}-tls"), old_ca, owner=owner)
            delivered(
                controller.store.secrets, kube.put(secrets_path(NAMESPACE, f"{name}-tls"), secret)
            )
        yield kube, runtime, controller


def test_a_reissue_within_the_burst_takes_three_writes(ecdsa_ca: CertificateAuthority) -> None:
    old_ca = make_ca(common_name="Old Root CA")
    with world(ecdsa_ca, old_ca, FakeClock(NOW)) as (kube, _, controller):
        kube.writes.clear()
        asyncio.run(controller.reconcile((NAMESPACE, "a")))
    assert issuer_of(kube, "a") == "CN=Test Root CA"
    assert kube.writes == [
        ("PATCH", secrets_path(NAMESPACE, "a-tls")),
        ("PATCH", certificates_path(NAMESPACE, "a", "status")),
        ("POST", "/api/v1/namespaces/shop/events"),
    ]
    [ready] = kube.objects[certificates_path(NAMESPACE, "a")]["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Reissued")
    assert kube.objects[certificates_path(NAMESPACE, "a")]["status"]["revision"] == 2


def test_certificates_beyond_the_burst_are_reissued_in_their_turn(
    ecdsa_ca: CertificateAuthority,
) -> None:
    # One clock for the token bucket and for the times the controller
    # gives the scheduler (its rate-limit turns).
    clock = FakeClock(NOW)
    start = clock.time()
    old_ca = make_ca(common_name="Old Root CA")
    with world(ecdsa_ca, old_ca, clock) as (kube, runtime, controller):
        lane = runtime.lane(NAME)

        async def scenario() -> None:
            for name in NAMES:
                await controller.reconcile((NAMESPACE, name))
            # The burst: a is re-issued, b and c were told to come back in 1 s and 2 s.
            assert [issuer_of(kube, n) for n in NAMES] == [
                "CN=Test Root CA",
                "CN=Old Root CA",
                "CN=Old Root CA",
            ]
            assert [lane.due_at((NAMESPACE, n)) for n in ("b", "c")] == [start + 1, start + 2]
            # Each comes back at its turn and is issued without queueing again.
            clock.set(NOW + datetime.timedelta(seconds=1))
            await controller.reconcile((NAMESPACE, "b"))
            assert issuer_of(kube, "b") == "CN=Test Root CA"
            clock.set(NOW + datetime.timedelta(seconds=2))
            await controller.reconcile((NAMESPACE, "c"))

        asyncio.run(scenario())
    assert [issuer_of(kube, n) for n in NAMES] == ["CN=Test Root CA"] * 3
    assert [secret_revision(kube, n) for n in NAMES] == [2, 2, 2]


def test_an_early_look_keeps_the_turn_it_was_given(ecdsa_ca: CertificateAuthority) -> None:
    clock = FakeClock(NOW)
    start = clock.time()
    old_ca = make_ca(common_name="Old Root CA")
    with world(ecdsa_ca, old_ca, clock) as (kube, runtime, controller):
        lane = runtime.lane(NAME)

        async def scenario() -> None:
            for name in NAMES:
                await controller.reconcile((NAMESPACE, name))
            clock.set(NOW + datetime.timedelta(seconds=0.5))
            for name in ("b", "c"):
                await controller.reconcile((NAMESPACE, name))
            assert [lane.due_at((NAMESPACE, n)) for n in ("b", "c")] == [start + 1, start + 2]
            clock.set(NOW + datetime.timedelta(seconds=1))
            await controller.reconcile((NAMESPACE, "b"))
            clock.set(NOW + datetime.timedelta(seconds=2))
            await controller.reconcile((NAMESPACE, "c"))

        asyncio.run(scenario())
    assert [issuer_of(kube, n) for n in NAMES] == ["CN=Test Root CA"] * 3
