"""A certificate in a namespace the namespace watch has not delivered yet
(created a moment ago) waits for it, and is then judged by the namespace's
labels, never by none: with no labels, a policy that selects
`team NotIn (b)` or `team DoesNotExist` would grant a team-b namespace.
The namespace is not read from the API server (the operator may only list
and watch namespaces): its watch delivers it within moments."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import certificates_path
from mtls_operator.certificates.controller import NAME
from mtls_operator.pki import CertificateAuthority
from mtls_operator.podcertificates.controller import (
    DEFAULT_SIGNER_NAME,
    PodCertificateController,
    PodSignerSettings,
)
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.revocations.store import Revocations
from mtls_operator.runtime import backoff
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.shared import SharedParts
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.clock import NOW, FakeClock
from support.fake_api import (
    CLUSTER_CA,
    FakeKube,
    FixedCAs,
    certificate_controller,
    delivered,
    status_of,
    written_paths,
)
from support.objects import MIN_DURATION, NAMESPACE, certificate_body

KEY = (NAMESPACE, "public")
CERTIFICATE_PATH = certificates_path(NAMESPACE, "public")
NOT_TEAM_B = {"key": "team", "operator": "NotIn", "values": ["b"]}


def everyone_but_team_b(expression: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsPolicy",
        "metadata": {"name": "public", "uid": "uid-public", "generation": 1},
        "spec": {
            "namespaceSelector": {"matchExpressions": [expression]},
            "allow": {"dnsNames": ["api.example.com"]},
        },
    }


def team(name: str) -> dict[str, Any]:
    return {"metadata": {"name": NAMESPACE, "labels": {"team": name}}}


def reconcile_public(
    kube: FakeKube,
    ca: CertificateAuthority,
    policy: dict[str, Any],
    namespaces: Sequence[dict[str, Any]],
) -> float | None:
    """Reconciles the certificate once; returns when it is due again."""
    body = certificate_body("public", secretName="public-tls", dnsNames=["api.example.com"])
    with certificate_controller(
        kube,
        {CLUSTER_CA: ca},
        FakeClock(NOW),
        min_duration=MIN_DURATION,
        identity=IdentityMode.NAMESPACE,
        policies=[policy],
        namespaces=namespaces,
    ) as (runtime, controller):
        delivered(controller.store.certificates, kube.put(CERTIFICATE_PATH, body))
        asyncio.run(controller.reconcile(KEY))
        return runtime.lane(NAME).due_at(KEY)


def test_a_namespace_not_seen_yet_is_waited_for_not_judged(
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube = FakeKube()
    due = reconcile_public(kube, ecdsa_ca, everyone_but_team_b(NOT_TEAM_B), namespaces=[])
    assert due == FakeClock(NOW).time() + backoff.UNSEEN_NAMESPACE
    assert status_of(kube, CERTIFICATE_PATH) == {}, "neither refused nor issued"
    assert written_paths(kube) == []
    assert secrets_path(NAMESPACE, "public-tls") not in kube.objects
    assert kube.reads == [], "the operator may not read a namespace"


@pytest.mark.parametrize(
    "expression",
    [NOT_TEAM_B, {"key": "team", "operator": "DoesNotExist"}],
    ids=["not-in", "does-not-exist"],
)
def test_a_namespace_once_seen_is_judged_by_its_labels(
    ecdsa_ca: CertificateAuthority, expression: dict[str, Any]
) -> None:
    kube = FakeKube()
    reconcile_public(kube, ecdsa_ca, everyone_but_team_b(expression), namespaces=[team("b")])
    ready = status_of(kube, CERTIFICATE_PATH)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "PolicyDenied"), ready
    assert ready["message"].startswith('spec.dnsNames "api.example.com": '), ready["message"]
    assert secrets_path(NAMESPACE, "public-tls") not in kube.objects


def test_a_namespace_once_seen_is_granted_what_its_labels_select(
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube = FakeKube()
    reconcile_public(kube, ecdsa_ca, everyone_but_team_b(NOT_TEAM_B), namespaces=[team("a")])
    ready = status_of(kube, CERTIFICATE_PATH)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("True", "Issued"), ready
    assert secrets_path(NAMESPACE, "public-tls") in kube.objects
    assert kube.reads == []


def test_a_pod_request_from_a_namespace_not_seen_yet_waits_for_it(
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube = FakeKube()
    clock = FakeClock(NOW)
    runtime = Runtime(kube, clock, Metrics(), workers=1, crypto_threads=1)
    runtime.executor.shutdown()
    tenancy = Tenancy(runtime, IdentitySettings(IdentityMode.NAMESPACE))
    signer = PodCertificateController(
        SharedParts(
            runtime,
            FixedCAs({CLUSTER_CA: ecdsa_ca}),
            tenancy,
            Revocations(runtime.cache, runtime.kube, ()),
        ),
        PodSignerSettings(CLUSTER_CA),
    )
    request = {
        "metadata": {"namespace": "shop", "name": "req-1"},
        "spec": {"signerName": DEFAULT_SIGNER_NAME},
    }
    signer.requests[0].apply("ADDED", request)
    asyncio.run(signer.reconcile(("shop", "req-1")))
    assert runtime.lane(signer.name).due_at(("shop", "req-1")) == (
        clock.time() + backoff.UNSEEN_NAMESPACE
    )
    assert (kube.reads, kube.writes) == ([], [])
