"""Manual renewal through one real Reconciler over an in-memory API: one
renew-requested-at value means exactly one re-issuance, whatever time it
names (a client clock far ahead of the operator's included)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from mtls_operator.api.managed_secret import RENEWAL_REQUEST_ANNOTATION, read_secret
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import certificates_path
from mtls_operator.certificates.controller import CertificateController
from mtls_operator.certificates.store import Store
from mtls_operator.pki import CertificateAuthority

from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, certificate_controller, delivered, status_of
from support.objects import (
    CERTIFICATE,
    MIN_DURATION,
    NAMESPACE,
    SECRET_NAME,
    certificate_spec,
    secret_body,
    spec_dict,
)

CERTIFICATE_PATH = certificates_path(NAMESPACE, CERTIFICATE.name)
SECRET_PATH = secrets_path(NAMESPACE, SECRET_NAME)
KEY = CERTIFICATE.key
# A request dated weeks after the operator's clock.
FUTURE_REQUEST = "2027-01-01T00:00:00Z"


def certificate_body(request: str | None) -> dict[str, Any]:
    annotations = {"mtls.dev/renew-requested-at": request} if request else {}
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {
            "namespace": NAMESPACE,
            "name": CERTIFICATE.name,
            "uid": CERTIFICATE.uid,
            "generation": 1,
            "creationTimestamp": "2026-11-28T11:00:00Z",
            "annotations": annotations,
        },
        "spec": spec_dict(),
    }


World = tuple[FakeKube, Store, CertificateController, FakeClock]


@pytest.fixture
def world(ecdsa_ca: CertificateAuthority) -> Iterator[World]:
    """The certificate and the Secret the operator issued for it at NOW."""
    kube = FakeKube()
    clock = FakeClock(NOW)
    with certificate_controller(kube, {CLUSTER_CA: ecdsa_ca}, clock, min_duration=MIN_DURATION) as (
        _,
        controller,
    ):
        store = controller.store
        delivered(store.certificates, kube.put(CERTIFICATE_PATH, certificate_body(None)))
        delivered(store.secrets, kube.put(SECRET_PATH, secret_body(certificate_spec(), ecdsa_ca)))
        yield kube, store, controller, clock


def request_renewal(kube: FakeKube, store: Store, request: str) -> None:
    """What `kubectl annotate --overwrite mtlscertificate payments
    mtls.dev/renew-requested-at=...` does, as the watch delivers it."""
    body = kube.objects[CERTIFICATE_PATH]
    body["metadata"]["annotations"]["mtls.dev/renew-requested-at"] = request
    delivered(store.certificates, kube.put(CERTIFICATE_PATH, body))


def secret_facts(kube: FakeKube) -> tuple[int, str | None, str | None]:
    facts = read_secret(kube.objects[SECRET_PATH])
    serial = facts.leaf.serial_number if facts.leaf else None
    return facts.revision, facts.annotations.get(RENEWAL_REQUEST_ANNOTATION), serial


def test_a_request_dated_in_the_future_is_honoured_once(world: World) -> None:
    kube, store, reconciler, clock = world
    _, _, first_serial = secret_facts(kube)

    async def scenario() -> None:
        request_renewal(kube, store, FUTURE_REQUEST)
        clock.set(NOW + datetime.timedelta(minutes=1))
        kube.writes.clear()
        await reconciler.reconcile(KEY)
        assert kube.writes == [
            ("PATCH", SECRET_PATH),
            ("PATCH", f"{CERTIFICATE_PATH}/status"),
            ("POST", "/api/v1/namespaces/shop/events"),
        ]
        revision, honoured, serial = secret_facts(kube)
        assert (revision, honoured) == (2, FUTURE_REQUEST)
        assert serial != first_serial
        [ready] = status_of(kube, CERTIFICATE_PATH)["conditions"]
        assert (ready["status"], ready["reason"]) == ("True", "Renewed")

        # Looked at again, long before the time the request names: nothing
        # more to issue.
        for minutes in (2, 3, 60 * 24):
            clock.set(NOW + datetime.timedelta(minutes=minutes))
            kube.writes.clear()
            await reconciler.reconcile(KEY)
            assert ("PATCH", SECRET_PATH) not in kube.writes
            assert secret_facts(kube) == (2, FUTURE_REQUEST, serial)

    asyncio.run(scenario())


def test_every_new_request_is_one_more_reissuance(world: World) -> None:
    kube, store, reconciler, clock = world

    async def scenario() -> list[tuple[int, str | None]]:
        seen = []
        # The second request is dated before the first: still a new request.
        for request in ("2026-11-28T12:05:00Z", "2026-11-28T11:00:00Z"):
            request_renewal(kube, store, request)
            for _ in range(2):
                clock.advance(60)
                await reconciler.reconcile(KEY)
            revision, honoured, _ = secret_facts(kube)
            seen.append((revision, honoured))
        return seen

    assert asyncio.run(scenario()) == [(2, "2026-11-28T12:05:00Z"), (3, "2026-11-28T11:00:00Z")]
