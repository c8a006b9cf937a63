"""The signer's view of PodCertificateRequests comes from the shared cache: a request that a
re-list no longer holds (deleted while the watch was down) is forgotten, not signed later;
one that is decided, by us or another, is never signed again."""

from __future__ import annotations

import asyncio

from mtls_operator.pki import CertificateAuthority
from mtls_operator.podcertificates.controller import (
    DEFAULT_SIGNER_NAME,
    PodCertificateController,
    PodSignerSettings,
)
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.revocations.store import Revocations
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.shared import SharedParts
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, FixedCAs

KEY = ("shop", "req-1")


def request(version: str, conditions: list[dict[str, str]] | None = None) -> dict[str, object]:
    return {
        "metadata": {"namespace": "shop", "name": "req-1", "resourceVersion": version},
        "spec": {"signerName": DEFAULT_SIGNER_NAME},
        "status": {"conditions": conditions or []},
    }


def signer(ca: CertificateAuthority) -> tuple[PodCertificateController, FakeKube, Runtime]:
    kube = FakeKube()
    runtime = Runtime(kube, FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
    runtime.executor.shutdown()
    tenancy = Tenancy(runtime, IdentitySettings(IdentityMode.NAMESPACE))
    controller = PodCertificateController(
        SharedParts(
            runtime,
            FixedCAs({CLUSTER_CA: ca}),
            tenancy,
            Revocations(runtime.cache, runtime.kube, ()),
        ),
        PodSignerSettings(CLUSTER_CA),
    )
    return controller, kube, runtime


def test_a_request_a_relist_no_longer_holds_is_forgotten(ecdsa_ca: CertificateAuthority) -> None:
    controller, kube, runtime = signer(ecdsa_ca)
    [requests] = controller.requests
    requests.begin_relist()
    requests.add_page([request("1")])
    requests.end_relist("")
    lane = runtime.lane(controller.name)
    lane.retry(KEY)  # it failed once, and waits to be tried again
    assert lane.due_at(KEY) is not None

    requests.begin_relist()
    requests.end_relist("")
    assert lane.due_at(KEY) is None
    asyncio.run(controller.reconcile(KEY))
    assert (kube.reads, kube.writes) == ([], [])


def test_a_decided_request_is_not_signed(ecdsa_ca: CertificateAuthority) -> None:
    controller, kube, _ = signer(ecdsa_ca)
    [requests] = controller.requests
    requests.apply("ADDED", request("1"))
    denied = {"type": "Denied", "status": "True", "reason": "Nope", "message": "no"}
    requests.apply("MODIFIED", request("2", [denied]))
    asyncio.run(controller.reconcile(KEY))
    assert (kube.reads, kube.writes) == ([], [])
