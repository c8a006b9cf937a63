"""Property tests of every name a tenant can ask for (DNS, IP, URI, e-mail,
Common Name, Organizational Unit), written with control characters, dot
segments (also percent-encoded), IPv4-mapped addresses and mixed case: each
is either refused (InvalidSpec, or PolicyDenied under the identity policy)
in one line naming the field and the value, or signed exactly as written
(DNS names and e-mail domains in the lower case DNS compares in) and allowed
by a rule that this test states again on its own. The CRD's patterns refuse
what the operator refuses for control and separator characters."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import unicodedata
from typing import Any
from urllib.parse import unquote

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtls_operator.api.mtls_policy import parse_policy
from mtls_operator.api.spec import InvalidSpec, parse_spec
from mtls_operator.api.status import Reason
from mtls_operator.pki import CertificateAuthority, KeySpec, issue_leaf
from mtls_operator.pki.names import parse_subject_identity, parse_subject_text
from mtls_operator.policy.identity import IdentityRules, identity_violation, issued_request

from support.authorities import make_ca
from support.clock import NOW
from support.paths import REPO_ROOT

MIN_DURATION = datetime.timedelta(minutes=1)
NS = "team-a"
CA = make_ca()
PUBLIC_KEY = KeySpec().generate().public_key()

# What a cluster administrator granted every namespace, team-a included.
GRANTS: dict[str, list[str]] = {
    "dnsNames": ["api.example.com", "*.partner.example"],
    "ipAddresses": ["10.20.0.0/16", "fd00::/64", "::/64"],
    "uris": ["spiffe://partner.example/ns/team-a/*"],
    "emailAddresses": ["*@team-a.example.com"],
    "commonNames": ["Legacy Server", "api.team-b.svc", "10.96.0.10"],
    "organizationalUnits": ["Platform"],
}
RULES = IdentityRules(
    NS,
    "cluster.local",
    "cluster.local",
    (parse_policy("grants", {"namespaceSelector": {}, "allow": GRANTS}),),
)

# --- What a tenant writes. ---

CONTROL = st.sampled_from(["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"])
TRICKS = st.sampled_from(
    ["/", "..", "/../", "/./", "%2e%2e", "%2E.", ".%2e/", "%2f..%2f", "%00", "%0a", "\\..\\"]
)
SEPARATOR = st.sampled_from(["/", "=", ",", "+", ";", "\\", '"', "<", ">", "#", " "])
SEPARATORS = st.one_of(SEPARATOR, st.just("/O=team-b"))


@st.composite
def written(draw: st.DrawFn, bases: list[str], extras: st.SearchStrategy[str]) -> str:
    """One of `bases`, maybe with characters of mixed case and a few inserts."""
    text = draw(st.sampled_from(bases))
    if draw(st.booleans()):
        flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
        text = "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.one_of(CONTROL, extras)) + text[at:]
    return text


DNS = written(
    [
        "api.team-a.svc",
        "web-0.api.team-a.svc.cluster.local",
        "*.team-a.svc",
        "api.team-b.svc",
        "api.team-b.svc.team-a.svc",
        "api.example.com",
        "billing.partner.example",
        "10.20.3.4",
    ],
    st.sampled_from([".", "..", "-", "*", "_", ".team-a.svc", " "]),
)
IPS = st.one_of(
    written(
        [
            "10.20.3.4",
            "fd00::1",
            "::1",
            "::ffff:10.20.3.4",
            "::ffff:8.8.8.8",
            "::ffff:a14:304",
            "::10.20.3.4",
            "2002:a14:304::1",
            "10.96.0.10",
        ],
        st.sampled_from([":", ".", "0", "%0", "/64"]),
    ),
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
)
URIS = written(
    [
        "spiffe://cluster.local/ns/team-a/sa/web",
        "spiffe://cluster.local/ns/team-b/sa/web",
        "spiffe://partner.example/ns/team-a/sa/web",
        "spiffe://partner.example/ns/team-a/x/y",
        "spiffe://partner.example/ns/team-b/sa/web",
        "https://partner.example/ns/team-a/x",
    ],
    TRICKS,
)
EMAILS = written(
    ["ops@team-a.example.com", "ops@team-b.example.com", "first.last@team-a.example.com"],
    st.sampled_from([".", "..", "@", "@team-a.example.com", " "]),
)
COMMON_NAMES = written(
    [
        "checkout",
        "Legacy Server",
        "api.team-a.svc",
        "api.team-b.svc",
        "10.96.0.10",
        "10.20.3.4",
        "fd00::1",
    ],
    SEPARATORS,
)
UNITS = written(["Platform", "team-b", "Ops"], SEPARATORS)

IDENTITY_FIELDS = frozenset({"commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses"})


def _has_identity(spec: dict[str, Any]) -> bool:
    return bool(IDENTITY_FIELDS & spec.keys())


REQUESTS: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {"usage": st.sampled_from(["server", "client", "both"])},
    optional={
        "commonName": COMMON_NAMES,
        "dnsNames": st.lists(DNS, min_size=1, max_size=2),
        "ipAddresses": st.lists(IPS, min_size=1, max_size=2),
        "uris": st.lists(URIS, min_size=1, max_size=2),
        "emailAddresses": st.lists(EMAILS, min_size=1, max_size=2),
        "subject": st.fixed_dictionaries({"organizationalUnits": st.lists(UNITS, max_size=2)}),
    },
).filter(_has_identity)


# --- The rules, stated again. ---

_OWN_DNS = (".team-a.svc", ".team-a.svc.cluster.local")
_ACCOUNT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def dns_allowed(name: str) -> bool:
    return name.endswith(_OWN_DNS) or any(
        name.endswith(g[1:]) if g.startswith("*.") else name == g for g in GRANTS["dnsNames"]
    )


def ip_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
    networks = [ipaddress.ip_network(n) for n in GRANTS["ipAddresses"]]
    return not mapped and any(address in network for network in networks)


def uri_allowed(uri: str) -> bool:
    segments = unquote(uri.split("://", 1)[-1]).replace("\\", "/").split("/")
    if any(segment in (".", "..") for segment in segments):
        return False
    own = "spiffe://cluster.local/ns/team-a/sa/"
    if uri.startswith(own) and _ACCOUNT.fullmatch(uri.removeprefix(own)):
        return True
    return any(uri.startswith(g[:-1]) and len(uri) > len(g) - 1 for g in GRANTS["uris"])


def email_allowed(address: str) -> bool:
    return address.rpartition("@")[2] == "team-a.example.com"


def is_plain_text(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def names_no_dn_parser_splits(text: str) -> bool:
    return (
        is_plain_text(text)
        and not any(c in '/=,+;\\"<>' for c in text)
        and not text.startswith("#")
        and text == text.strip(" ")
    )


def as_host(text: str) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """What a server's Common Name adds to the SAN, if anything."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    labels = text.lower().split(".")
    label = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
    if all(label.fullmatch(part) for part in labels):
        return text.lower()
    return None


# --- The property. ---


def outcome(fields: dict[str, Any], ca: CertificateAuthority) -> tuple[str, str | x509.Certificate]:
    try:
        spec = parse_spec({"secretName": "s", **fields}, MIN_DURATION)
    except InvalidSpec as err:
        return "InvalidSpec", str(err)
    violation = identity_violation(spec.request, RULES)
    if violation is not None:
        assert violation.reason == Reason.POLICY_DENIED
        return "PolicyDenied", violation.message
    request = issued_request(spec.request, RULES)
    return "signed", issue_leaf(ca, request, PUBLIC_KEY, NOW).certificate


def assert_names_the_field_and_value(message: str, fields: dict[str, Any]) -> None:
    assert "\n" not in message, message
    assert "\r" not in message, message
    field_path, _, rest = message.removeprefix("spec.").partition(" ")
    key = field_path.split("[", 1)[0]
    values = fields.get(key) if key != "subject.organizationalUnits" else None
    if key == "subject.organizationalUnits":
        values = fields["subject"]["organizationalUnits"]
    written_values = values if isinstance(values, list) else [values]
    assert any(
        rest.startswith(json.dumps(shown)) for v in written_values for shown in _shown_as(str(v))
    ), message


def _shown_as(value: str) -> set[str]:
    """The value as written, or as the operator canonicalised it (DNS names
    and e-mail domains in lower case, IP addresses in their short form)."""
    local, at, domain = value.rpartition("@")
    shown = {value, value.lower(), f"{local}{at}{domain.lower()}"}
    with contextlib.suppress(ValueError):
        shown.add(str(ipaddress.ip_address(value)))
    return shown


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=REQUESTS)
def test_every_name_is_refused_or_signed_as_written_and_allowed(fields: dict[str, Any]) -> None:
    verdict, result = outcome(fields, CA)
    if verdict != "signed":
        assert isinstance(result, str)
        assert_names_the_field_and_value(result, fields)
        return
    assert isinstance(result, x509.Certificate)
    san: list[x509.GeneralName] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        san = list(result.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    signed_dns = [n.value for n in san if isinstance(n, x509.DNSName)]
    signed_ips = [
        n.value
        for n in san
        if isinstance(n, x509.IPAddress)
        and isinstance(n.value, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    signed_uris = [n.value for n in san if isinstance(n, x509.UniformResourceIdentifier)]
    signed_emails = [n.value for n in san if isinstance(n, x509.RFC822Name)]

    expected_dns = [n.lower() for n in fields.get("dnsNames", [])]
    expected_ips = [ipaddress.ip_address(a) for a in fields.get("ipAddresses", [])]
    common_name = fields.get("commonName")
    if common_name and fields["usage"] != "client":
        host = as_host(common_name)
        assert host is not None or common_name in GRANTS["commonNames"], common_name
        if isinstance(host, str):
            expected_dns.insert(0, host)
        elif host is not None:
            expected_ips.insert(0, host)
    assert sorted(set(signed_dns)) == sorted(set(expected_dns))
    assert sorted(set(signed_ips), key=str) == sorted(set(expected_ips), key=str)
    assert sorted(set(signed_uris)) == sorted(set(fields.get("uris", [])))
    expected_emails = [
        f"{a.rpartition('@')[0]}@{a.rpartition('@')[2].lower()}"
        for a in fields.get("emailAddresses", [])
    ]
    assert sorted(set(signed_emails)) == sorted(set(expected_emails))

    assert all(dns_allowed(n) and is_plain_text(n) for n in signed_dns), signed_dns
    assert all(ip_allowed(a) for a in signed_ips), signed_ips
    assert all(uri_allowed(u) and is_plain_text(u) for u in signed_uris), signed_uris
    assert all(email_allowed(e) and is_plain_text(e) for e in signed_emails), signed_emails

    subject = result.subject
    names = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    assert names == ([common_name] if common_name else [])
    units = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    assert units == fields.get("subject", {}).get("organizationalUnits", [])
    assert all(u in GRANTS["organizationalUnits"] for u in units), units
    assert all(names_no_dn_parser_splits(str(v)) for v in [*names, *units])
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [NS]


# --- The CRDs say the same for the characters a schema can check. ---


def _crd_spec(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO_ROOT / "crds" / f"{name}.yaml").read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"])


def _pattern(properties: dict[str, Any], name: str) -> str:
    field = properties[name]
    return str(field.get("items", field)["pattern"])


CERTIFICATE = _crd_spec("mtlscertificates")["properties"]
SUBJECT = CERTIFICATE["subject"]["properties"]
ALLOW = _crd_spec("mtlspolicies")["properties"]["allow"]["properties"]
# Those that refuse what string-DN parsers split (parse_subject_identity)...
IDENTITY_PATTERNS = {
    "commonName": _pattern(CERTIFICATE, "commonName"),
    "subject.organizationalUnits": _pattern(SUBJECT, "organizationalUnits"),
    "allow.commonNames": _pattern(ALLOW, "commonNames"),
    "allow.organizationalUnits": _pattern(ALLOW, "organizationalUnits"),
}
# ...and those that refuse control characters (parse_subject_text).
NAME_KINDS = ("dnsNames", "ipAddresses", "uris", "emailAddresses")
TEXT_PATTERNS = {
    **{kind: _pattern(CERTIFICATE, kind) for kind in NAME_KINDS},
    **{f"subject.{k}": _pattern(SUBJECT, k) for k in ("organizations", "provinces", "localities")},
    **{f"allow.{kind}": _pattern(ALLOW, kind) for kind in NAME_KINDS},
}


def schema_allows(pattern: str, text: str) -> bool:
    # The API server matches with Go's regexp, whose `$` ends the text only:
    # Python's fullmatch is the same. Go writes U+2028 as \x{2028}.
    python_pattern = re.sub(r"\\x\{([0-9a-f]{4})\}", r"\\u\1", pattern)
    return re.fullmatch(python_pattern, text) is not None


def operator_allows(check: Any, text: str) -> bool:
    try:
        check(text)
    except ValueError:
        return False
    return True


TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), CONTROL, SEPARATOR, st.sampled_from(["a", " ", "#"])
    ),
    min_size=1,
    max_size=12,
)


@given(TEXT)
def test_the_schemas_refuse_what_the_operator_refuses_in_a_common_name_or_unit(
    text: str,
) -> None:
    allowed = operator_allows(parse_subject_identity, text)
    for field, pattern in IDENTITY_PATTERNS.items():
        assert schema_allows(pattern, text) is allowed, field


@given(TEXT)
def test_the_schemas_refuse_control_characters_in_names_and_text(text: str) -> None:
    plain = operator_allows(parse_subject_text, text)
    for field, pattern in TEXT_PATTERNS.items():
        assert schema_allows(pattern, text) is plain, field


@given(
    kind=st.sampled_from(NAME_KINDS),
    value=st.one_of(DNS, IPS, URIS, EMAILS),
)
def test_the_operator_refuses_what_the_schema_refuses(kind: str, value: str) -> None:
    """Nothing the schema refuses could have been signed, had it got past
    the API server (an object stored before the pattern was added)."""
    if not schema_allows(TEXT_PATTERNS[kind], value):
        verdict, _ = outcome({"usage": "server", kind: [value]}, CA)
        assert verdict == "InvalidSpec", value
