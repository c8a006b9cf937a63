"""The trust-bundle publisher over an in-memory API: what it writes, what
its own writes' watch events make it do (nothing), and the publication gate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mtls_operator.api.trust_bundles import published
from mtls_operator.authorities.store import CARef
from mtls_operator.pki import CertificateAuthority
from mtls_operator.revocations.store import Revocations
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.shared import SharedParts
from mtls_operator.tenancy.store import IdentitySettings, Tenancy
from mtls_operator.trustbundles.controller import (
    NAME,
    TrustBundleController,
    TrustBundleSettings,
)

from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.fake_api import FakeKube, FixedCAs

CA = CARef("mtls-operator", "mtls-operator-ca")
SIGNERS = ("mtls.dev/cluster-ca", "mtls.dev/pod-identity")
PATHS = [
    f"/apis/certificates.k8s.io/v1/clustertrustbundles/{s.replace('/', ':')}:roots" for s in SIGNERS
]


@pytest.fixture
def world(
    ecdsa_ca: CertificateAuthority,
) -> Iterator[tuple[FakeKube, Runtime, TrustBundleController, FixedCAs]]:
    kube = FakeKube()
    runtime = Runtime(kube, FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
    authorities = FixedCAs({CA: ecdsa_ca})
    authorities.await_publication(CA)
    tenancy = Tenancy(runtime, IdentitySettings())
    controller = TrustBundleController(
        SharedParts(runtime, authorities, tenancy, Revocations(runtime.cache, runtime.kube, ())),
        TrustBundleSettings(CA, SIGNERS),
    )
    yield kube, runtime, controller, authorities
    runtime.executor.shutdown()


def test_one_bundle_per_signer_then_published(
    world: tuple[FakeKube, Runtime, TrustBundleController, FixedCAs],
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube, _, controller, authorities = world
    assert not authorities.is_published(CA, ecdsa_ca)
    for signer in SIGNERS:
        asyncio.run(controller.reconcile(("ClusterTrustBundle", signer)))
    for path, signer in zip(PATHS, SIGNERS, strict=True):
        body = kube.objects[path]
        assert body["spec"] == {
            "signerName": signer,
            "trustBundle": ecdsa_ca.trust_bundle_pem.decode(),
        }
        assert body["metadata"]["labels"]["mtls.dev/trust-bundle"] == "roots"
        assert published(body).managed
    assert authorities.is_published(CA, ecdsa_ca)
    # Nothing changed: looking again writes nothing.
    kube.writes.clear()
    for signer in SIGNERS:
        asyncio.run(controller.reconcile(("ClusterTrustBundle", signer)))
    assert kube.writes == []


def test_a_new_bundle_replaces_the_old_and_unknown_keys_write_nothing(
    world: tuple[FakeKube, Runtime, TrustBundleController, FixedCAs],
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube, runtime, controller, authorities = world
    for signer in SIGNERS:
        asyncio.run(controller.reconcile(("ClusterTrustBundle", signer)))
    rotated = make_ca(common_name="Next Root CA")
    authorities._states[CA] = rotated
    assert not authorities.is_published(CA, rotated)
    for signer in SIGNERS:
        asyncio.run(controller.reconcile(("ClusterTrustBundle", signer)))
    assert kube.objects[PATHS[1]]["spec"]["trustBundle"] == rotated.trust_bundle_pem.decode()
    assert authorities.is_published(CA, rotated)
    kube.writes.clear()
    # A bundle's watch event names it by object name: never taken for a signer.
    asyncio.run(controller.reconcile(("ClusterTrustBundle", "mtls.dev:cluster-ca:roots")))
    assert kube.writes == []
    assert runtime.lane(NAME).due_at(("ClusterTrustBundle", "mtls.dev:cluster-ca:roots")) is None
