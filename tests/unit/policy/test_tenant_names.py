"""Names a tenant writes to slip past the checks: control
characters, dot segments, IPv4-mapped addresses, a Common Name that lands
in the SAN, and a Common Name that string-DN parsers split. Each is written
as the admin of namespace team-a would write it, under the policies a cluster
administrator applied, and must be refused in one line naming the field and
the value: InvalidSpec for what no certificate may carry, PolicyDenied for
what the identity policy does not grant."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from mtls_operator.api.mtls_policy import parse_policy
from mtls_operator.api.spec import InvalidSpec, parse_spec
from mtls_operator.pki import CertificateAuthority, issue_leaf
from mtls_operator.pki.keys import KeySpec
from mtls_operator.policy import pod_request
from mtls_operator.policy.identity import IdentityRules, identity_violation, issued_request

from support.clock import NOW
from support.objects import pod_certificate_request

MIN_DURATION = datetime.timedelta(minutes=1)
NS = "team-a"
EVERY_NAMESPACE: dict[str, Any] = {"namespaceSelector": {}}
# What a cluster administrator granted team-a.
PARTNER = {**EVERY_NAMESPACE, "allow": {"uris": ["spiffe://partner.example/ns/team-a/*"]}}
LOCAL_V6 = {**EVERY_NAMESPACE, "allow": {"ipAddresses": ["::/64", "fd00::/64"]}}
TEAM_A_MAIL = {**EVERY_NAMESPACE, "allow": {"emailAddresses": ["*@team-a.example.com"]}}
LEGACY_NAMES = {
    **EVERY_NAMESPACE,
    "allow": {"commonNames": ["api.team-b.svc", "10.96.0.10", "Legacy Server"]},
}


def outcome(fields: dict[str, Any], *policies: dict[str, Any]) -> str:
    """What the admin of team-a gets: `InvalidSpec: <message>`,
    `PolicyDenied: <message>`, or `signed`."""
    try:
        spec = parse_spec({"secretName": "s", **fields}, MIN_DURATION)
    except InvalidSpec as err:
        return f"InvalidSpec: {err}"
    parsed = tuple(parse_policy(f"p{i}", p) for i, p in enumerate(policies))
    violation = identity_violation(
        spec.request, IdentityRules(NS, "cluster.local", "cluster.local", parsed)
    )
    if violation is not None:
        return f"{violation.reason}: {violation.message}"
    return "signed"


def assert_refused(result: str, field: str, value: str) -> None:
    assert result.startswith(("InvalidSpec: ", "PolicyDenied: ")), result
    assert "\n" not in result, result
    assert result.split(": ", 1)[1].startswith(f"spec.{field} {json.dumps(value)}"), result


# --- Control characters ---


@pytest.mark.parametrize(
    ("fields", "policies", "field", "value"),
    [
        (
            {"usage": "server", "dnsNames": ["api.team-b.svc\n.team-a.svc"]},
            (),
            "dnsNames[0]",
            "api.team-b.svc\n.team-a.svc",
        ),
        (
            {"usage": "server", "dnsNames": ["api.team-a.svc\n"]},
            (),
            "dnsNames[0]",
            "api.team-a.svc\n",
        ),
        (
            {"usage": "client", "uris": ["spiffe://cluster.local/ns/team-a/sa/web\n"]},
            (),
            "uris[0]",
            "spiffe://cluster.local/ns/team-a/sa/web\n",
        ),
        (
            {"usage": "client", "uris": ["spiffe://partner.example/ns/team-a/x\n/../team-b"]},
            (PARTNER,),
            "uris[0]",
            "spiffe://partner.example/ns/team-a/x\n/../team-b",
        ),
        (
            {"usage": "client", "emailAddresses": ["ops\n@team-a.example.com"]},
            (TEAM_A_MAIL,),
            "emailAddresses[0]",
            "ops\n@team-a.example.com",
        ),
        (
            {"usage": "server", "commonName": "api.team-a.svc\n"},
            (),
            "commonName",
            "api.team-a.svc\n",
        ),
    ],
    ids=[
        "dns-inner-newline",
        "dns-trailing-newline",
        "spiffe-newline",
        "uri-newline",
        "email-newline",
        "cn-newline",
    ],
)
def test_control_characters_never_pass_a_name_check(
    fields: dict[str, Any], policies: tuple[dict[str, Any], ...], field: str, value: str
) -> None:
    assert_refused(outcome(fields, *policies), field, value)


def test_a_pod_cannot_smuggle_a_name_through_its_annotation(
    ecdsa_ca: CertificateAuthority,
) -> None:
    # Written by the pod's author into the podCertificate volume, which the
    # kubelet copies into the request verbatim.
    annotations = {"mtls.dev/dns-names": "api.kube-system.svc\n.shop.svc"}
    smuggled = pod_certificate_request(unverifiedUserAnnotations=annotations)
    volume = ("mtls.dev/pod-identity", tuple(annotations.items()))
    decision = pod_request.decide(
        pod_request.Input(
            request=smuggled,
            pod=pod_request.PodFacts("uid-pod", "node-1", "payments", (volume,)),
            node_uid="uid-node",
            service_account_uid="uid-sa",
            public_key=KeySpec().generate().public_key(),
            ca=ecdsa_ca,
            trust_domain="cluster.local",
            identity=IdentityRules("shop", "cluster.local", "cluster.local"),
            max_duration=datetime.timedelta(hours=24),
            now=NOW,
        )
    )
    assert isinstance(decision, pod_request.Refuse), decision
    assert decision.violation.reason == pod_request.INVALID_ANNOTATIONS
    assert "\n" not in decision.violation.message


# --- Dot segments in URIs under a policy prefix ---


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://partner.example/ns/team-a/../team-b/sa/x",
        "spiffe://partner.example/ns/team-a/./../team-b/sa/x",
        "spiffe://partner.example/ns/team-a/%2e%2e/team-b/sa/x",
        "spiffe://partner.example/ns/team-a/%2E./team-b/sa/x",
        "spiffe://partner.example/ns/team-a/.%2e/team-b/sa/x",
        "spiffe://partner.example/ns/team-a/x%2f..%2f..%2fteam-b",
        "spiffe://partner.example/ns/team-a/x/..",
        "spiffe://partner.example/ns/team-a/x%00",
    ],
)
def test_dot_segments_never_climb_out_of_a_uri_prefix(uri: str) -> None:
    assert_refused(outcome({"usage": "client", "uris": [uri]}, PARTNER), "uris[0]", uri)


def test_a_uri_prefix_still_grants_what_is_under_it() -> None:
    for uri in (
        "spiffe://partner.example/ns/team-a/sa/web",
        "spiffe://partner.example/ns/team-a/sa/web.v1",
        "spiffe://partner.example/ns/team-a/...",
    ):
        assert outcome({"usage": "client", "uris": [uri]}, PARTNER) == "signed", uri


# --- IPv4-mapped IPv6 addresses ---


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "::ffff:808:808", "::FFFF:10.0.0.1"])
def test_an_ipv4_mapped_address_is_refused(address: str) -> None:
    result = outcome({"usage": "server", "ipAddresses": [address]}, LOCAL_V6)
    assert_refused(result, "ipAddresses[0]", address)
    assert result.startswith("InvalidSpec: ")
    assert "IPv4-mapped" in result


def test_a_policy_cannot_grant_ipv4_mapped_addresses() -> None:
    policy = parse_policy("p", {**EVERY_NAMESPACE, "allow": {"ipAddresses": ["::ffff:0:0/96"]}})
    assert policy.grants.ip_networks == ()
    assert "IPv4-mapped" in policy.ignored[0]


def test_ipv6_grants_still_grant_ipv6_addresses() -> None:
    assert outcome({"usage": "server", "ipAddresses": ["fd00::1", "::1"]}, LOCAL_V6) == "signed"


# --- A Common Name that lands in the SAN ---


@pytest.mark.parametrize("common_name", ["api.team-b.svc", "API.team-b.svc", "10.96.0.10"])
@pytest.mark.parametrize("usage", ["server", "both"])
def test_allow_common_names_grants_no_san_name(common_name: str, usage: str) -> None:
    result = outcome({"usage": usage, "commonName": common_name}, LEGACY_NAMES)
    assert_refused(result, "commonName", common_name)
    assert result.startswith("PolicyDenied: ")


def test_allow_common_names_still_grants_a_common_name_that_is_no_host() -> None:
    fields = {"usage": "server", "commonName": "Legacy Server", "dnsNames": ["api.team-a.svc"]}
    assert outcome(fields, LEGACY_NAMES) == "signed"


# --- A Common Name that string-DN parsers split ---


@pytest.mark.parametrize(
    "common_name",
    [
        "checkout/O=team-b",
        "checkout,O=team-b",
        "checkout+O=team-b",
        "checkout;O=team-b",
        "O=team-b",
        'check"out',
        "check\\out",
        "<checkout>",
        "checkout\x00",
        "check\tout",
        "checkout\x7f",
        "checkout\x85",
        " checkout",
        "checkout ",
        "#0403",
    ],
)
@pytest.mark.parametrize("usage", ["client", "server"])
def test_a_common_name_no_parser_of_string_names_can_split(common_name: str, usage: str) -> None:
    result = outcome({"usage": usage, "commonName": common_name, "dnsNames": ["a.team-a.svc"]})
    assert_refused(result, "commonName", common_name)
    assert result.startswith("InvalidSpec: ")


@pytest.mark.parametrize(
    ("subject", "field", "value"),
    [
        (
            {"organizationalUnits": ["ops,CN=admin"]},
            "subject.organizationalUnits[0]",
            "ops,CN=admin",
        ),
        ({"localities": ["Berlin\n"]}, "subject.localities[0]", "Berlin\n"),
        ({"provinces": ["Berlin\x00"]}, "subject.provinces[0]", "Berlin\x00"),
    ],
)
def test_subject_attributes_hold_no_control_or_separator_characters(
    subject: dict[str, Any], field: str, value: str
) -> None:
    result = outcome({"usage": "client", "commonName": "checkout", "subject": subject})
    assert_refused(result, field, value)
    assert result.startswith("InvalidSpec: ")


def test_a_client_common_name_is_signed_as_written(ecdsa_ca: CertificateAuthority) -> None:
    for common_name in ("checkout", "Checkout Service", "svc:checkout@team-a", "a.b-c_d"):
        fields = {"usage": "client", "commonName": common_name}
        assert outcome(fields) == "signed", common_name
        spec = parse_spec({"secretName": "s", **fields}, MIN_DURATION)
        request = issued_request(spec.request, IdentityRules(NS, "cluster.local", "cluster.local"))
        leaf = issue_leaf(ecdsa_ca, request, KeySpec().generate().public_key(), NOW).certificate
        assert leaf.subject.rfc4514_string() == f"CN={common_name},O=team-a"
