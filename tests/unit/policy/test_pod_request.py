"""The decision for a PodCertificateRequest, as tables: every claim checked
against the objects, the identity signed, and the times the API server
demands (whole seconds, refresh at least ten minutes inside the lifetime)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from mtls_operator.pki import CertificateAuthority, Usage
from mtls_operator.policy import pod_request
from mtls_operator.policy.identity import IdentityRules

from support.authorities import make_ca
from support.clock import NOW
from support.objects import pod_certificate_request as request

td = datetime.timedelta
KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


SIGNER = "mtls.dev/pod-identity"


def pod(declared: dict[str, str] | None = None, signer: str = SIGNER) -> pod_request.PodFacts:
    """Pod shop/app, whose podCertificate volume declares `declared`."""
    volume = (signer, tuple(sorted((declared or {}).items())))
    return pod_request.PodFacts("uid-pod", "node-1", "payments", (volume,))


def given(ca: CertificateAuthority, **changes: Any) -> pod_request.Input:
    # Unless told otherwise, the pod declares what the request carries, as
    # the kubelet copies it.
    asked = dict((changes.get("request") or request()).user_annotations)
    base = pod_request.Input(
        request=request(),
        pod=pod(asked),
        node_uid="uid-node",
        service_account_uid="uid-sa",
        public_key=KEY,
        ca=ca,
        trust_domain="cluster.local",
        identity=IdentityRules("shop", "cluster.local", "cluster.local"),
        max_duration=td(hours=24),
        now=NOW + td(microseconds=123456),
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"pod": None}, "PodNotFound"),
        ({"pod": pod_request.PodFacts("other", "node-1", "payments")}, "PodUIDMismatch"),
        ({"pod": pod_request.PodFacts("uid-pod", "node-2", "payments")}, "NodeMismatch"),
        ({"node_uid": None}, "NodeNotFound"),
        ({"node_uid": "other"}, "NodeUIDMismatch"),
        ({"pod": pod_request.PodFacts("uid-pod", "node-1", "billing")}, "ServiceAccountMismatch"),
        ({"service_account_uid": None}, "ServiceAccountNotFound"),
        ({"service_account_uid": "other"}, "ServiceAccountUIDMismatch"),
        ({"public_key": None}, "UnsupportedKeyType"),
        ({"pod": pod(signer="example.com/other")}, "PodCertificateVolumeNotFound"),
        (
            {
                "request": request(unverifiedUserAnnotations={"mtls.dev/dns-names": "*.shop.svc"}),
                "pod": pod({"mtls.dev/dns-names": "app.shop.svc"}),
            },
            "InvalidUnverifiedUserAnnotations",
        ),
        (
            {
                "request": request(
                    unverifiedUserAnnotations={"mtls.dev/dns-names": "app.shop.svc"}
                ),
                "pod": pod(),
            },
            "InvalidUnverifiedUserAnnotations",
        ),
        (
            {"request": request(), "pod": pod({"mtls.dev/dns-names": "app.shop.svc"})},
            "InvalidUnverifiedUserAnnotations",
        ),
        (
            {"request": request(unverifiedUserAnnotations={"x.io/a": "b"})},
            "InvalidUnverifiedUserAnnotations",
        ),
        (
            {"request": request(unverifiedUserAnnotations={"mtls.dev/dns-names": "bad_name"})},
            "InvalidUnverifiedUserAnnotations",
        ),
        (
            {
                "request": request(
                    unverifiedUserAnnotations={"mtls.dev/dns-names": "api.billing.svc"}
                )
            },
            "PolicyDenied",
        ),
    ],
)
def test_denials(ecdsa_ca: CertificateAuthority, changes: dict[str, Any], reason: str) -> None:
    decision = pod_request.decide(given(ecdsa_ca, **changes))
    assert isinstance(decision, pod_request.Refuse)
    assert (decision.outcome, decision.violation.reason) == ("Denied", reason)
    assert decision.violation.message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pod": None}, "pod shop/app does not exist"),
        (
            {"pod": pod_request.PodFacts("other", "node-1", "payments")},
            "pod shop/app has UID other, not uid-pod",
        ),
        (
            {"pod": pod_request.PodFacts("uid-pod", "node-2", "payments")},
            "pod app runs on node-2, not node-1",
        ),
        (
            {"pod": pod_request.PodFacts("uid-pod", "", "payments")},
            "pod app runs on no node, not node-1",
        ),
        ({"node_uid": None}, "node node-1 does not exist"),
        ({"node_uid": "other"}, "node node-1 has UID other, not uid-node"),
        (
            {"pod": pod_request.PodFacts("uid-pod", "node-1", "billing")},
            "pod app runs as service account billing, not payments",
        ),
        ({"service_account_uid": None}, "service account shop/payments does not exist"),
        (
            {"service_account_uid": "other"},
            "service account shop/payments has UID other, not uid-sa",
        ),
    ],
)
def test_a_refused_claim_says_what_was_found(
    ecdsa_ca: CertificateAuthority, changes: dict[str, Any], message: str
) -> None:
    decision = pod_request.decide(given(ecdsa_ca, **changes))
    assert isinstance(decision, pod_request.Refuse)
    assert decision.violation.message == message


def test_the_pod_identity_and_its_times(ecdsa_ca: CertificateAuthority) -> None:
    own = request(unverifiedUserAnnotations={"mtls.dev/dns-names": "app.shop.svc, app.shop.svc"})
    decision = pod_request.decide(given(ecdsa_ca, request=own))
    assert isinstance(decision, pod_request.Sign)
    assert decision.request.usage is Usage.BOTH
    assert decision.request.alt_names.uris == ("spiffe://cluster.local/ns/shop/sa/payments",)
    assert decision.request.alt_names.dns_names == ("app.shop.svc",)
    assert decision.now == NOW  # whole seconds
    assert decision.not_after - decision.not_before == td(hours=24)
    assert decision.not_before == NOW - td(minutes=1)
    assert decision.not_before + td(minutes=10) <= decision.begin_refresh_at
    assert decision.begin_refresh_at <= decision.not_after - td(minutes=10)
    two_thirds = decision.not_before + td(hours=16)
    assert two_thirds - td(hours=1) <= decision.begin_refresh_at <= two_thirds


@pytest.mark.parametrize(
    ("max_expiration", "max_duration", "lifetime"),
    [
        (7200, td(hours=24), td(hours=2)),
        (86400 * 30, td(hours=24), td(hours=24)),
        (3600, td(hours=24), td(hours=1)),
    ],
)
def test_the_lifetime_is_the_shorter_limit(
    ecdsa_ca: CertificateAuthority, max_expiration: int, max_duration: td, lifetime: td
) -> None:
    decision = pod_request.decide(
        given(
            ecdsa_ca,
            request=request(maxExpirationSeconds=max_expiration),
            max_duration=max_duration,
        )
    )
    assert isinstance(decision, pod_request.Sign)
    assert decision.not_after - decision.not_before == lifetime
    assert decision.begin_refresh_at.microsecond == 0


def test_a_ca_ending_within_the_hour_fails_the_request() -> None:
    ending = make_ca(common_name="Ending CA", lifetime=td(minutes=30))
    decision = pod_request.decide(given(ending))
    assert isinstance(decision, pod_request.Refuse)
    assert (decision.outcome, decision.violation.reason) == ("Failed", "CAExpiresTooSoon")


def test_open_identity_signs_any_name_asked_for(ecdsa_ca: CertificateAuthority) -> None:
    anything = request(unverifiedUserAnnotations={"mtls.dev/dns-names": "api.example.com"})
    assert isinstance(
        pod_request.decide(given(ecdsa_ca, request=anything, identity=None)), pod_request.Sign
    )
