"""The identity policy, as tables: every identity kind, allowed and refused,
under the namespace default and under MtlsPolicies; and hypothesis: no spec
and no policy makes the check raise anything but its documented errors."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtls_operator.api.mtls_policy import InvalidPolicy, PolicySpec, parse_policy
from mtls_operator.api.spec import InvalidSpec, parse_spec
from mtls_operator.api.status import Reason
from mtls_operator.pki import LeafRequest
from mtls_operator.policy.identity import (
    IdentityRules,
    identity_violation,
    issued_request,
    verdicts,
)

MIN_DURATION = datetime.timedelta(minutes=1)
NS = "team-a"


def rules(*policies: dict[str, Any], namespace: str = NS) -> IdentityRules:
    parsed = tuple(parse_policy(f"p{i}", p) for i, p in enumerate(policies))
    return IdentityRules(namespace, "cluster.local", "cluster.local", parsed)


def request(**spec: Any) -> LeafRequest:
    body = {"secretName": "s", "usage": "server", **spec}
    return parse_spec(body, MIN_DURATION).request


def refusal(req: LeafRequest, given_rules: IdentityRules) -> str | None:
    violation = identity_violation(req, given_rules)
    if violation is None:
        return None
    assert violation.reason == Reason.POLICY_DENIED
    return violation.message


ALL: dict[str, Any] = {"namespaceSelector": {}}

# (case, spec fields, policies, the start of the refusal or None when allowed)
CASES: list[tuple[str, dict[str, Any], tuple[dict[str, Any], ...], str | None]] = [
    # DNS names.
    ("dns-own-svc", {"dnsNames": ["api.team-a.svc"]}, (), None),
    ("dns-own-cluster-domain", {"dnsNames": ["api.team-a.svc.cluster.local"]}, (), None),
    ("dns-own-deeper", {"dnsNames": ["web-0.nginx.team-a.svc.cluster.local"]}, (), None),
    ("dns-own-wildcard", {"dnsNames": ["*.team-a.svc"]}, (), None),
    ("dns-other-namespace", {"dnsNames": ["api.team-b.svc"]}, (), 'spec.dnsNames "api.team-b.svc"'),
    (
        "dns-other-cluster-domain",
        {"dnsNames": ["api.team-b.svc.cluster.local"]},
        (),
        'spec.dnsNames "api.team-b.svc.cluster.local"',
    ),
    ("dns-bare-service", {"dnsNames": ["api.team-a"]}, (), 'spec.dnsNames "api.team-a"'),
    ("dns-single-label", {"dnsNames": ["api"]}, (), 'spec.dnsNames "api"'),
    (
        "dns-wildcard-svc",
        {"dnsNames": ["*.svc.cluster.local"]},
        (),
        'spec.dnsNames "*.svc.cluster.local"',
    ),
    ("dns-wildcard-other", {"dnsNames": ["*.team-b.svc"]}, (), 'spec.dnsNames "*.team-b.svc"'),
    (
        "dns-suffix-trick",
        {"dnsNames": ["api.team-a.svc.evil.com"]},
        (),
        'spec.dnsNames "api.team-a.svc.evil.com"',
    ),
    ("dns-namespace-itself", {"dnsNames": ["team-a.svc"]}, (), 'spec.dnsNames "team-a.svc"'),
    ("dns-public", {"dnsNames": ["api.example.com"]}, (), 'spec.dnsNames "api.example.com"'),
    (
        "dns-public-granted",
        {"dnsNames": ["api.example.com"]},
        ({**ALL, "allow": {"dnsNames": ["api.example.com"]}},),
        None,
    ),
    (
        "dns-wildcard-grant",
        {"dnsNames": ["x.y.team-a.example.com", "*.team-a.example.com"]},
        ({**ALL, "allow": {"dnsNames": ["*.team-a.example.com"]}},),
        None,
    ),
    (
        "dns-private-tld-grant",
        {"dnsNames": ["billing.internal"]},
        ({**ALL, "allow": {"dnsNames": ["*.internal"]}},),
        None,
    ),
    (
        "dns-wildcard-grant-not-the-apex",
        {"dnsNames": ["team-a.example.com"]},
        ({**ALL, "allow": {"dnsNames": ["*.team-a.example.com"]}},),
        'spec.dnsNames "team-a.example.com"',
    ),
    (
        "dns-grant-of-another-usage",
        {"dnsNames": ["api.example.com"]},
        ({**ALL, "allow": {"dnsNames": ["api.example.com"]}, "usages": ["client"]},),
        'spec.dnsNames "api.example.com"',
    ),
    (
        "dns-grant-shorter-than-duration",
        {"dnsNames": ["api.example.com"], "duration": "2160h"},
        ({**ALL, "allow": {"dnsNames": ["api.example.com"]}, "maxDuration": "720h"},),
        'spec.dnsNames "api.example.com"',
    ),
    (
        "dns-grant-within-duration",
        {"dnsNames": ["api.example.com"], "duration": "720h"},
        ({**ALL, "allow": {"dnsNames": ["api.example.com"]}, "maxDuration": "720h"},),
        None,
    ),
    # Common Names.
    ("cn-server-own", {"commonName": "api.team-a.svc"}, (), None),
    ("cn-server-other", {"commonName": "api.team-b.svc"}, (), 'spec.commonName "api.team-b.svc"'),
    ("cn-server-not-dns", {"commonName": "Legacy Server"}, (), 'spec.commonName "Legacy Server"'),
    (
        "cn-server-granted",
        {"commonName": "Legacy Server", "dnsNames": ["a.team-a.svc"]},
        ({**ALL, "allow": {"commonNames": ["Legacy Server"]}},),
        None,
    ),
    ("cn-server-ip", {"commonName": "10.0.0.1"}, (), 'spec.commonName "10.0.0.1"'),
    ("cn-client-free", {"usage": "client", "commonName": "api.team-b.svc"}, (), None),
    (
        "cn-both-is-server",
        {"usage": "both", "commonName": "checkout"},
        (),
        'spec.commonName "checkout"',
    ),
    # IP addresses.
    (
        "ip-refused",
        {"ipAddresses": ["10.0.0.1"], "dnsNames": ["a.team-a.svc"]},
        (),
        'spec.ipAddresses "10.0.0.1"',
    ),
    (
        "ip-granted",
        {"ipAddresses": ["10.20.3.4", "fd00::1"]},
        ({**ALL, "allow": {"ipAddresses": ["10.20.0.0/16", "fd00::/64"]}},),
        None,
    ),
    (
        "ip-outside-grant",
        {"ipAddresses": ["10.21.0.1"]},
        ({**ALL, "allow": {"ipAddresses": ["10.20.0.0/16"]}},),
        'spec.ipAddresses "10.21.0.1"',
    ),
    # URIs.
    ("uri-own", {"usage": "client", "uris": ["spiffe://cluster.local/ns/team-a/sa/api"]}, (), None),
    (
        "uri-other-namespace",
        {"usage": "client", "uris": ["spiffe://cluster.local/ns/team-b/sa/api"]},
        (),
        'spec.uris "spiffe://cluster.local/ns/team-b/sa/api"',
    ),
    (
        "uri-other-trust-domain",
        {"usage": "client", "uris": ["spiffe://evil.example/ns/team-a/sa/api"]},
        (),
        'spec.uris "spiffe://evil.example/ns/team-a/sa/api"',
    ),
    (
        "uri-account-with-a-path",
        {"usage": "client", "uris": ["spiffe://cluster.local/ns/team-a/sa/api/team-b/sa/x"]},
        (),
        'spec.uris "spiffe://cluster.local/ns/team-a/sa/api/team-b/sa/x"',
    ),
    (
        "uri-no-account",
        {"usage": "client", "uris": ["spiffe://cluster.local/ns/team-a/sa/"]},
        (),
        'spec.uris "spiffe://cluster.local/ns/team-a/sa/"',
    ),
    (
        "uri-query",
        {"usage": "client", "uris": ["spiffe://cluster.local/ns/team-a/sa/api?x=1"]},
        (),
        'spec.uris "spiffe://cluster.local/ns/team-a/sa/api?x=1"',
    ),
    (
        "uri-prefix-grant",
        {"usage": "client", "uris": ["spiffe://partner.example/billing"]},
        ({**ALL, "allow": {"uris": ["spiffe://partner.example/*"]}},),
        None,
    ),
    (
        "uri-prefix-grant-not-the-prefix",
        {"usage": "client", "uris": ["spiffe://partner.example/"]},
        ({**ALL, "allow": {"uris": ["spiffe://partner.example/*"]}},),
        'spec.uris "spiffe://partner.example/"',
    ),
    (
        "uri-prefix-grant-not-a-sibling",
        {"usage": "client", "uris": ["spiffe://partner.example.evil/x"]},
        ({**ALL, "allow": {"uris": ["spiffe://partner.example/*"]}},),
        'spec.uris "spiffe://partner.example.evil/x"',
    ),
    # E-mail addresses.
    (
        "email-refused",
        {"usage": "client", "emailAddresses": ["ops@team-a.example.com"]},
        (),
        'spec.emailAddresses "ops@team-a.example.com"',
    ),
    (
        "email-domain-grant",
        {"usage": "client", "emailAddresses": ["ops@team-a.example.com"]},
        ({**ALL, "allow": {"emailAddresses": ["*@team-a.example.com"]}},),
        None,
    ),
    (
        "email-other-domain",
        {"usage": "client", "emailAddresses": ["ops@team-b.example.com"]},
        ({**ALL, "allow": {"emailAddresses": ["*@team-a.example.com"]}},),
        'spec.emailAddresses "ops@team-b.example.com"',
    ),
    # Subject fields.
    (
        "organization-set-by-tenant",
        {"usage": "client", "commonName": "c", "subject": {"organizations": ["team-b"]}},
        (),
        'spec.subject.organizations "team-b"',
    ),
    (
        "unit-refused",
        {"usage": "client", "commonName": "c", "subject": {"organizationalUnits": ["team-b"]}},
        (),
        'spec.subject.organizationalUnits "team-b"',
    ),
    (
        "unit-granted",
        {"usage": "client", "commonName": "c", "subject": {"organizationalUnits": ["Platform"]}},
        ({**ALL, "allow": {"organizationalUnits": ["Platform"]}},),
        None,
    ),
    (
        "descriptive-fields-free",
        {
            "usage": "client",
            "commonName": "c",
            "subject": {"countries": ["DE"], "localities": ["Berlin"]},
        },
        (),
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "policies", "expected"),
    [pytest.param(f, p, e, id=i) for i, f, p, e in CASES],
)
def test_identity_table(
    fields: dict[str, Any], policies: tuple[dict[str, Any], ...], expected: str | None
) -> None:
    message = refusal(request(**fields), rules(*policies))
    if expected is None:
        assert message is None
    else:
        assert message is not None
        assert message.startswith(expected + ": "), message


def test_a_refusal_names_the_rule_and_the_policies_looked_at() -> None:
    selecting = {
        "namespaceSelector": {"matchLabels": {"team": "a"}},
        "allow": {"dnsNames": ["api.example.com"]},
        "usages": ["client"],
    }
    message = refusal(request(dnsNames=["api.example.com"]), rules(selecting))
    assert message == (
        'spec.dnsNames "api.example.com": not a name of namespace team-a (the default allows '
        "*.team-a.svc and *.team-a.svc.cluster.local), and no MtlsPolicy grants it "
        "(allow.dnsNames); MtlsPolicies for namespace team-a: p0 (grants only client "
        "certificates)"
    )
    alone = refusal(request(ipAddresses=["10.0.0.1"]), rules())
    assert alone == (
        'spec.ipAddresses "10.0.0.1": IP addresses belong to no namespace, and no MtlsPolicy '
        "grants it (allow.ipAddresses); no MtlsPolicy selects namespace team-a"
    )


def test_verdicts_name_what_allows_each_identity() -> None:
    granted = {**ALL, "allow": {"dnsNames": ["api.example.com"]}}
    found = [
        (v.field, v.value, v.allowed, v.rule)
        for v in verdicts(
            request(dnsNames=["api.team-a.svc", "api.example.com", "api.team-b.svc"]),
            rules(granted),
        )
    ]
    assert found[0] == (
        "dnsNames",
        "api.team-a.svc",
        True,
        "the namespace default (*.team-a.svc and *.team-a.svc.cluster.local)",
    )
    assert found[1] == ("dnsNames", "api.example.com", True, "MtlsPolicy p0")
    assert found[2][:3] == ("dnsNames", "api.team-b.svc", False)


def test_the_organization_is_the_namespace() -> None:
    issued = issued_request(request(usage="client", commonName="checkout"), rules())
    assert issued.subject.organizations == (NS,)
    assert issued.subject.to_x509().rfc4514_string() == "CN=checkout,O=team-a"
    unchanged = request(usage="client", commonName="checkout")
    assert issued_request(unchanged, None) == unchanged


def test_the_trust_domain_can_differ_from_the_cluster_domain() -> None:
    corp = IdentityRules(NS, "cluster.local", "corp.example", ())
    own = request(usage="client", uris=["spiffe://corp.example/ns/team-a/sa/api"])
    assert identity_violation(own, corp) is None
    assert identity_violation(
        request(usage="client", uris=["spiffe://cluster.local/ns/team-a/sa/api"]), corp
    )


# --- MtlsPolicy parsing ---


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.namespaceSelector None: is required ({} selects every namespace)"),
        (
            {**ALL, "allow": {"dnsNames": ["*foo.example.com"]}},
            "spec.allow.dnsNames[0] \"*foo.example.com\": a wildcard may only be a leading '*.'",
        ),
        (
            {**ALL, "allow": {"dnsNames": ["*.-bad"]}},
            "spec.allow.dnsNames[0] \"*.-bad\": label '-bad' must consist of a-z, 0-9 and '-', and start and end with a letter or digit",
        ),
        (
            {**ALL, "allow": {"ipAddresses": ["10.0.0.1/8"]}},
            'spec.allow.ipAddresses[0] "10.0.0.1/8": not a CIDR such as 10.20.0.0/16 (10.0.0.1/8 has host bits set)',
        ),
        (
            {**ALL, "allow": {"uris": ["spiffe://x/*/y"]}},
            "spec.allow.uris[0] \"spiffe://x/*/y\": '*' may only end the pattern, after a '/' (spiffe://example.org/*)",
        ),
        (
            {**ALL, "allow": {"emailAddresses": ["a*@example.com"]}},
            "spec.allow.emailAddresses[0] \"a*@example.com\": a wildcard may only be the whole part before '@' (*@example.com)",
        ),
        ({**ALL, "usages": ["peer"]}, 'spec.usages[0] "peer": must be server, client or both'),
        (
            {**ALL, "maxDuration": "30d"},
            "spec.maxDuration \"30d\": unknown unit 'd' (use h, m, s, ms, us or ns)",
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Is"}]}},
            'spec.namespaceSelector.matchExpressions[0].operator "Is": must be In, NotIn, Exists or DoesNotExist',
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}},
            "spec.namespaceSelector.matchExpressions[0].values []: must not be empty for In",
        ),
    ],
    ids=[
        "no-selector",
        "dns-inner-wildcard",
        "dns-wildcard-bad-label",
        "ip-host-bits",
        "uri-inner-star",
        "email-partial-wildcard",
        "usage",
        "duration",
        "operator",
        "in-without-values",
    ],
)
def test_invalid_policies_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse_policy("p", spec)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "a", "x": "y"}, True),
        ({"matchLabels": {"team": "a"}}, {"team": "b"}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            {"team": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_namespace_selectors(
    selector: dict[str, Any], labels: dict[str, str], selected: bool
) -> None:
    assert parse_policy("p", {"namespaceSelector": selector}).selector.matches(labels) is selected


# --- No input makes the check raise anything but its documented errors. ---

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_names = st.lists(
    st.one_of(
        _text,
        st.sampled_from(["a.team-a.svc", "*.team-a.svc", "x.example.com", "*.example.com"]),
    ),
    max_size=4,
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    spec=st.fixed_dictionaries(
        {"secretName": st.just("s"), "usage": st.sampled_from(["server", "client", "both"])},
        optional={
            "commonName": _text,
            "dnsNames": _names,
            "ipAddresses": st.lists(_text, max_size=3),
            "uris": st.lists(_text, max_size=3),
            "emailAddresses": st.lists(_text, max_size=3),
            "subject": _json,
            "duration": _text,
        },
    ),
    policy=st.fixed_dictionaries(
        {"namespaceSelector": st.one_of(st.just({}), _json)},
        optional={
            "allow": st.fixed_dictionaries(
                {},
                optional={
                    "dnsNames": _names,
                    "ipAddresses": st.lists(_text, max_size=3),
                    "uris": st.lists(_text, max_size=3),
                    "emailAddresses": st.lists(_text, max_size=3),
                    "commonNames": st.lists(_text, max_size=3),
                },
            ),
            "usages": _json,
            "maxDuration": _json,
        },
    ),
    namespace=st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z"),
)
def test_no_spec_and_no_policy_breaks_the_check(
    spec: dict[str, Any], policy: dict[str, Any], namespace: str
) -> None:
    try:
        leaf_request = parse_spec(spec, MIN_DURATION).request
    except InvalidSpec:
        return
    try:
        parsed: tuple[PolicySpec, ...] = (parse_policy("p", policy),)
    except InvalidPolicy:
        parsed = ()
    outcome = identity_violation(
        leaf_request, IdentityRules(namespace, "cluster.local", "cluster.local", parsed)
    )
    assert outcome is None or outcome.reason == Reason.POLICY_DENIED
    assert all(isinstance(v.allowed, bool) for v in verdicts(leaf_request, rules()))
