"""Manual renewal through one real Reconciler over an in-memory API: one
renew-requested-at value means exactly one re-issuance, whatever time it
names (a client clock far ahead of the operator's included)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from mtls_operator.cas import CARef
from mtls_operator.kube import certificates_path, secrets_path
from mtls_operator.metrics import Metrics
from mtls_operator.pki import CertificateAuthority
from mtls_operator.reconcile import Reconciler, Settings
from mtls_operator.scheduler import Scheduler, TokenBucket, WorkQueue
from mtls_operator.secrets import RENEWAL_REQUEST_ANNOTATION, read_secret
from mtls_operator.store import Store

from conftest import NOW
from helpers.fake_api import FakeKube, FixedCAs, status_of
from helpers.objects import (
    CERTIFICATE,
    MIN_DURATION,
    NAMESPACE,
    SECRET_NAME,
    certificate_spec,
    secret_body,
    spec_dict,
)

CLUSTER_CA = CARef("mtls-system", "mtls-operator-ca")
CERTIFICATE_PATH = certificates_path(NAMESPACE, CERTIFICATE.name)
SECRET_PATH = secrets_path(NAMESPACE, SECRET_NAME)
KEY = CERTIFICATE.key
# A request dated weeks after the operator's clock.
FUTURE_REQUEST = "2027-01-01T00:00:00Z"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


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


def world(
    ca: CertificateAuthority, executor: ThreadPoolExecutor, clock: Clock
) -> tuple[FakeKube, Store, Reconciler]:
    """The certificate and the Secret the operator issued for it at NOW."""
    kube = FakeKube()
    store = Store(lambda key: None)
    store.upsert_certificate(kube.put(CERTIFICATE_PATH, certificate_body(None)))
    store.upsert_secret(kube.put(SECRET_PATH, secret_body(certificate_spec(), ca)))
    reconciler = Reconciler(
        kube=kube,
        store=store,
        cas=FixedCAs({CLUSTER_CA: ca}),
        scheduler=Scheduler(WorkQueue()),
        limiter=TokenBucket(1.0, burst=5),
        executor=executor,
        metrics=Metrics(),
        settings=Settings(CLUSTER_CA, MIN_DURATION),
        clock=clock,
    )
    return kube, store, reconciler


def request_renewal(kube: FakeKube, store: Store, request: str) -> None:
    """What `kubectl annotate --overwrite mtlscertificate payments
    mtls.dev/renew-requested-at=...` does, as the watch delivers it."""
    body = kube.objects[CERTIFICATE_PATH]
    body["metadata"]["annotations"]["mtls.dev/renew-requested-at"] = request
    store.upsert_certificate(kube.put(CERTIFICATE_PATH, body))


def secret_facts(kube: FakeKube) -> tuple[int, str | None, str | None]:
    facts = read_secret(kube.objects[SECRET_PATH])
    serial = facts.leaf.serial_number if facts.leaf else None
    return facts.revision, facts.annotations.get(RENEWAL_REQUEST_ANNOTATION), serial


def test_a_request_dated_in_the_future_is_honoured_once(
    ecdsa_ca: CertificateAuthority, executor: ThreadPoolExecutor
) -> None:
    clock = Clock()
    kube, store, reconciler = world(ecdsa_ca, executor, clock)
    _, _, first_serial = secret_facts(kube)

    async def scenario() -> None:
        request_renewal(kube, store, FUTURE_REQUEST)
        clock.now = NOW + datetime.timedelta(minutes=1)
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
            clock.now = NOW + datetime.timedelta(minutes=minutes)
            kube.writes.clear()
            await reconciler.reconcile(KEY)
            assert ("PATCH", SECRET_PATH) not in kube.writes
            assert secret_facts(kube) == (2, FUTURE_REQUEST, serial)

    asyncio.run(scenario())


def test_every_new_request_is_one_more_reissuance(
    ecdsa_ca: CertificateAuthority, executor: ThreadPoolExecutor
) -> None:
    clock = Clock()
    kube, store, reconciler = world(ecdsa_ca, executor, clock)

    async def scenario() -> list[tuple[int, str | None]]:
        seen = []
        # The second request is dated before the first: still a new request.
        for request in ("2026-11-28T12:05:00Z", "2026-11-28T11:00:00Z"):
            request_renewal(kube, store, request)
            for _ in range(2):
                clock.now += datetime.timedelta(minutes=1)
                await reconciler.reconcile(KEY)
            revision, honoured, _ = secret_facts(kube)
            seen.append((revision, honoured))
        return seen

    assert asyncio.run(scenario()) == [(2, "2026-11-28T12:05:00Z"), (3, "2026-11-28T11:00:00Z")]
