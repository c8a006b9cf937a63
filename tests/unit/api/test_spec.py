from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtls_operator.api.outputs import OutputFormat
from mtls_operator.api.spec import (
    DEFAULT_DURATION,
    CertificateSpec,
    InvalidSpec,
    PrivateKeyPolicy,
    RotationPolicy,
    SecretKeyRef,
    parse_spec,
)
from mtls_operator.pki import (
    DistinguishedName,
    KeyAlgorithm,
    KeyEncoding,
    KeySpec,
    LeafRequest,
    SubjectAltNames,
    Usage,
)
from mtls_operator.policy.renewal import renew_before

from support.objects import MIN_DURATION, spec_dict

td = datetime.timedelta
CN = "payments.shop.svc"
SERVER_DEFAULTS = LeafRequest(
    Usage.SERVER,
    DistinguishedName(common_name=CN),
    SubjectAltNames(dns_names=("payments", "payments.shop.svc")),
    DEFAULT_DURATION,
)


def default_spec(**fields: Any) -> CertificateSpec:
    """What the base spec parses to, with some fields replaced."""
    return CertificateSpec(**{"secret_name": "payments-tls", "request": SERVER_DEFAULTS, **fields})


def test_defaults_are_those_of_the_specification() -> None:
    parsed = parse_spec(
        {"secretName": "payments-tls", "usage": "client", "commonName": "alice"}, MIN_DURATION
    )
    assert parsed.request.lifetime == td(hours=2160)
    assert parsed.private_key.key == KeySpec(KeyAlgorithm.ECDSA, 256)
    assert parsed.private_key.encoding is KeyEncoding.PKCS8
    assert parsed.private_key.rotation is RotationPolicy.ALWAYS
    assert parsed.retain_secret is False
    assert parsed.renew_before is None
    assert parsed.renew_before_percentage is None
    assert parsed.ca_secret_name is None
    assert parsed.output_formats == frozenset()
    assert parsed.pkcs12_password is None
    assert parsed.secret_labels == ()
    assert parsed.secret_annotations == ()


VALID_SPECS = [
    pytest.param(spec_dict(), default_spec(), id="base"),
    pytest.param(
        {"secretName": "alice-tls", "usage": "client", "commonName": "alice"},
        CertificateSpec(
            "alice-tls",
            LeafRequest(
                Usage.CLIENT, DistinguishedName(common_name="alice"), lifetime=DEFAULT_DURATION
            ),
        ),
        id="client-common-name-only",
    ),
    pytest.param(
        {
            "secretName": "mesh-tls",
            "usage": "both",
            "uris": ["spiffe://cluster.local/ns/shop/sa/payments"],
        },
        CertificateSpec(
            "mesh-tls",
            LeafRequest(
                Usage.BOTH,
                DistinguishedName(),
                SubjectAltNames(uris=("spiffe://cluster.local/ns/shop/sa/payments",)),
                DEFAULT_DURATION,
            ),
        ),
        id="uri-only-no-common-name",
    ),
    pytest.param(
        spec_dict(
            commonName="",
            dnsNames=["Payments", "payments", "payments.shop.svc", "PAYMENTS.shop.svc"],
            ipAddresses=["10.0.0.12", "10.0.0.12", "::1", "0:0::1"],
            uris=["spiffe://a/b", "spiffe://a/b"],
            emailAddresses=["ops@Example.com", "ops@example.com"],
        ),
        default_spec(
            request=LeafRequest(
                Usage.SERVER,
                DistinguishedName(),
                SubjectAltNames(
                    dns_names=("payments", "payments.shop.svc"),
                    ip_addresses=(
                        ipaddress.ip_address("10.0.0.12"),
                        ipaddress.ip_address("::1"),
                    ),
                    uris=("spiffe://a/b",),
                    email_addresses=("ops@example.com",),
                ),
                DEFAULT_DURATION,
            )
        ),
        id="names-normalised-and-deduplicated",
    ),
    pytest.param(
        spec_dict(
            subject={
                "organizations": ["Shop"],
                "organizationalUnits": ["Payments", "Platform"],
                "countries": ["de", "Fr"],
                "provinces": ["Berlin"],
                "localities": ["Berlin"],
            }
        ),
        default_spec(
            request=LeafRequest(
                Usage.SERVER,
                DistinguishedName(
                    common_name=CN,
                    organizations=("Shop",),
                    organizational_units=("Payments", "Platform"),
                    countries=("DE", "FR"),
                    provinces=("Berlin",),
                    localities=("Berlin",),
                ),
                SERVER_DEFAULTS.alt_names,
                DEFAULT_DURATION,
            )
        ),
        id="subject-countries-upper-cased",
    ),
    pytest.param(
        spec_dict(commonName="c" * 64, dnsNames=None),
        default_spec(
            request=LeafRequest(
                Usage.SERVER, DistinguishedName(common_name="c" * 64), lifetime=DEFAULT_DURATION
            )
        ),
        id="common-name-of-64-characters",
    ),
    pytest.param(
        spec_dict(duration="1h30m", renewBefore="20m"),
        default_spec(
            request=LeafRequest(
                Usage.SERVER, SERVER_DEFAULTS.subject, SERVER_DEFAULTS.alt_names, td(minutes=90)
            ),
            renew_before=td(minutes=20),
        ),
        id="duration-and-renew-before",
    ),
    pytest.param(
        spec_dict(duration="1h"),
        default_spec(
            request=LeafRequest(
                Usage.SERVER, SERVER_DEFAULTS.subject, SERVER_DEFAULTS.alt_names, td(hours=1)
            )
        ),
        id="duration-equal-to-minimum",
    ),
    pytest.param(
        spec_dict(renewBeforePercentage=25),
        default_spec(renew_before_percentage=25),
        id="renew-before-percentage",
    ),
    pytest.param(
        spec_dict(privateKey={"algorithm": "RSA"}),
        default_spec(private_key=PrivateKeyPolicy(KeySpec(KeyAlgorithm.RSA, 2048))),
        id="rsa-default-size",
    ),
    pytest.param(
        spec_dict(
            privateKey={
                "algorithm": "RSA",
                "size": 3072,
                "encoding": "PKCS1",
                "rotationPolicy": "Never",
            }
        ),
        default_spec(
            private_key=PrivateKeyPolicy(
                KeySpec(KeyAlgorithm.RSA, 3072), KeyEncoding.PKCS1, RotationPolicy.NEVER
            )
        ),
        id="rsa-3072-pkcs1-never",
    ),
    pytest.param(
        spec_dict(privateKey={"algorithm": "ECDSA", "size": 384, "encoding": "PKCS1"}),
        default_spec(
            private_key=PrivateKeyPolicy(KeySpec(KeyAlgorithm.ECDSA, 384), KeyEncoding.PKCS1)
        ),
        id="ecdsa-384-sec1",
    ),
    pytest.param(
        spec_dict(privateKey={"algorithm": "Ed25519"}),
        default_spec(private_key=PrivateKeyPolicy(KeySpec(KeyAlgorithm.ED25519, None))),
        id="ed25519",
    ),
    pytest.param(
        spec_dict(
            secretTemplate={
                "labels": {"tier": "backend", "team": "payments"},
                "annotations": {"example.com/owner": "payments"},
            },
            secretDeletionPolicy="Retain",
        ),
        default_spec(
            secret_labels=(("team", "payments"), ("tier", "backend")),
            secret_annotations=(("example.com/owner", "payments"),),
            retain_secret=True,
        ),
        id="template-sorted-and-retain",
    ),
    pytest.param(
        spec_dict(secretDeletionPolicy="Delete", caSecretName="shop-ca"),
        default_spec(ca_secret_name="shop-ca"),
        id="namespaced-ca-and-delete",
    ),
    pytest.param(
        spec_dict(additionalOutputFormats=[{"type": "CombinedPEM"}, {"type": "DER"}]),
        default_spec(output_formats=frozenset({OutputFormat.COMBINED_PEM, OutputFormat.DER})),
        id="output-formats-as-objects",
    ),
    pytest.param(
        spec_dict(additionalOutputFormats=["CombinedPEM", {"type": "CombinedPEM"}]),
        default_spec(output_formats=frozenset({OutputFormat.COMBINED_PEM})),
        id="output-formats-as-strings-deduplicated",
    ),
    pytest.param(
        spec_dict(keystores={"pkcs12": {"passwordSecretRef": {"name": "p12-pass"}}}),
        default_spec(pkcs12_password=SecretKeyRef("p12-pass", "password")),
        id="pkcs12-default-key",
    ),
    pytest.param(
        spec_dict(keystores={"pkcs12": {"passwordSecretRef": {"name": "p12-pass", "key": "pw"}}}),
        default_spec(pkcs12_password=SecretKeyRef("p12-pass", "pw")),
        id="pkcs12-explicit-key",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), VALID_SPECS)
def test_valid_spec(spec: dict[str, Any], expected: CertificateSpec) -> None:
    assert parse_spec(spec, MIN_DURATION) == expected


LABEL_RULE = "must consist of a-z, 0-9 and '-', and start and end with a letter or digit"
OBJECT_NAME_RULE = "must be a lower-case RFC 1123 name (a-z, 0-9, '-' and '.')"

INVALID_SPECS = [
    # Required fields and their types.
    (spec_dict(secretName=None), 'spec.secretName "": is required'),
    (spec_dict(secretName=""), 'spec.secretName "": must not be empty'),
    (spec_dict(secretName=5), "spec.secretName 5: must be a string"),
    (spec_dict(secretName="payments_tls"), f'spec.secretName "payments_tls": {OBJECT_NAME_RULE}'),
    (
        spec_dict(secretName="Payments-TLS"),
        f'spec.secretName "Payments-TLS": {OBJECT_NAME_RULE}',
    ),
    (spec_dict(secretName="-tls"), f'spec.secretName "-tls": {OBJECT_NAME_RULE}'),
    (spec_dict(secretName="tls-"), f'spec.secretName "tls-": {OBJECT_NAME_RULE}'),
    (spec_dict(secretName="a..b"), f'spec.secretName "a..b": {OBJECT_NAME_RULE}'),
    (spec_dict(secretName=".tls"), f'spec.secretName ".tls": {OBJECT_NAME_RULE}'),
    (spec_dict(secretName="tls."), f'spec.secretName "tls.": {OBJECT_NAME_RULE}'),
    (spec_dict(secretName="a.-b"), f'spec.secretName "a.-b": {OBJECT_NAME_RULE}'),
    (spec_dict(secretName="*.tls"), f'spec.secretName "*.tls": {OBJECT_NAME_RULE}'),
    (
        spec_dict(secretName="a" * 254),
        f'spec.secretName "{"a" * 254}": must be at most 253 characters',
    ),
    (spec_dict(usage=None), 'spec.usage "": is required'),
    (spec_dict(usage="serve"), 'spec.usage "serve": must be server, client or both'),
    (spec_dict(usage=["server"]), "spec.usage ['server']: must be a string"),
    # Identity.
    (
        {"secretName": "payments-tls", "usage": "server"},
        'spec.commonName "": give at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses',
    ),
    (
        spec_dict(commonName="", dnsNames=[]),
        'spec.commonName "": give at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses',
    ),
    (
        spec_dict(commonName="c" * 65),
        f'spec.commonName "{"c" * 65}": is longer than 64 characters',
    ),
    (spec_dict(commonName=42), "spec.commonName 42: must be a string"),
    (
        spec_dict(dnsNames=["payments", "foo_bar"]),
        f"spec.dnsNames[1] \"foo_bar\": label 'foo_bar' {LABEL_RULE}",
    ),
    (spec_dict(dnsNames="payments"), 'spec.dnsNames "payments": must be a list'),
    (spec_dict(dnsNames=[42]), "spec.dnsNames[0] 42: must be a string"),
    (
        spec_dict(dnsNames=["*.com"]),
        'spec.dnsNames[0] "*.com": a wildcard must be followed by at least two labels (*.example.com)',
    ),
    (
        spec_dict(dnsNames=["10.0.0.1"]),
        'spec.dnsNames[0] "10.0.0.1": this is an IP address; list it under IP addresses',
    ),
    (
        spec_dict(dnsNames=["payments.shop.svc."]),
        'spec.dnsNames[0] "payments.shop.svc.": a DNS name must not end with a dot',
    ),
    (
        spec_dict(ipAddresses=["10.0.0.0/8"]),
        'spec.ipAddresses[0] "10.0.0.0/8": an IP address must not have a prefix length',
    ),
    (
        spec_dict(ipAddresses=["10.0.0.1", "999.1.1.1"]),
        'spec.ipAddresses[1] "999.1.1.1": not an IPv4 or IPv6 address',
    ),
    (
        spec_dict(uris=["payments"]),
        'spec.uris[0] "payments": a URI must start with a scheme such as spiffe: or https:',
    ),
    (
        spec_dict(emailAddresses=["nobody"]),
        'spec.emailAddresses[0] "nobody": an e-mail address must look like name@example.com',
    ),
    # Subject.
    (spec_dict(subject="Shop"), 'spec.subject "Shop": must be an object'),
    (
        spec_dict(subject={"organizations": [""]}),
        'spec.subject.organizations[0] "": must be 1 to 64 characters',
    ),
    (
        spec_dict(subject={"localities": ["l" * 129]}),
        f'spec.subject.localities[0] "{"l" * 129}": must be 1 to 128 characters',
    ),
    (
        spec_dict(subject={"localities": "Berlin"}),
        'spec.subject.localities "Berlin": must be a list',
    ),
    (
        spec_dict(subject={"organizationalUnits": [7]}),
        "spec.subject.organizationalUnits[0] 7: must be a string",
    ),
    (
        spec_dict(subject={"countries": ["DE", "DEU"]}),
        'spec.subject.countries[1] "DEU": must be a two-letter ISO 3166 code',
    ),
    (
        spec_dict(subject={"countries": ["1A"]}),
        'spec.subject.countries[0] "1A": must be a two-letter ISO 3166 code',
    ),
    # Durations.
    (
        spec_dict(duration="90d"),
        "spec.duration \"90d\": unknown unit 'd' (use h, m, s, ms, us or ns)",
    ),
    (spec_dict(duration=2160), "spec.duration 2160: must be a duration string such as 2160h"),
    (spec_dict(duration="0s"), 'spec.duration "0s": must be positive'),
    (spec_dict(duration="-1h"), 'spec.duration "-1h": must be positive'),
    (spec_dict(duration="59m59s"), 'spec.duration "59m59s": is shorter than the minimum 1h'),
    (
        spec_dict(renewBefore="2160h"),
        'spec.renewBefore "2160h": must be shorter than the duration (2160h)',
    ),
    (
        spec_dict(duration="24h", renewBefore="25h"),
        'spec.renewBefore "25h": must be shorter than the duration (24h)',
    ),
    (spec_dict(renewBefore="0s"), 'spec.renewBefore "0s": must be positive'),
    (
        spec_dict(renewBefore="720h", renewBeforePercentage=25),
        'spec.renewBefore "720h": set renewBefore or renewBeforePercentage, not both',
    ),
    (
        spec_dict(renewBeforePercentage=0),
        "spec.renewBeforePercentage 0: must be a whole number from 1 to 99",
    ),
    (
        spec_dict(renewBeforePercentage=100),
        "spec.renewBeforePercentage 100: must be a whole number from 1 to 99",
    ),
    (
        spec_dict(renewBeforePercentage=33.5),
        "spec.renewBeforePercentage 33.5: must be a whole number from 1 to 99",
    ),
    (
        spec_dict(renewBeforePercentage="33"),
        'spec.renewBeforePercentage "33": must be a whole number from 1 to 99',
    ),
    (
        spec_dict(renewBeforePercentage=True),
        "spec.renewBeforePercentage true: must be a whole number from 1 to 99",
    ),
    # Keys.
    (spec_dict(privateKey="RSA"), 'spec.privateKey "RSA": must be an object'),
    (
        spec_dict(privateKey={"algorithm": "DSA"}),
        'spec.privateKey.algorithm "DSA": must be ECDSA, RSA or Ed25519',
    ),
    (
        spec_dict(privateKey={"algorithm": 1}),
        "spec.privateKey.algorithm 1: must be a string",
    ),
    (
        spec_dict(privateKey={"algorithm": "Ed25519", "size": 256}),
        "spec.privateKey.size 256: Ed25519 keys have a fixed size; do not give a key size",
    ),
    (
        spec_dict(privateKey={"algorithm": "ECDSA", "size": 2048}),
        "spec.privateKey.size 2048: ECDSA key size 2048 is not supported (choose 256, 384, 521)",
    ),
    (
        spec_dict(privateKey={"algorithm": "RSA", "size": 1024}),
        "spec.privateKey.size 1024: RSA key size 1024 is not supported (choose 2048, 3072, 4096)",
    ),
    (
        spec_dict(privateKey={"size": "256"}),
        'spec.privateKey.size "256": must be a number',
    ),
    (spec_dict(privateKey={"size": True}), "spec.privateKey.size true: must be a number"),
    (
        spec_dict(privateKey={"encoding": "DER"}),
        'spec.privateKey.encoding "DER": must be PKCS8 or PKCS1',
    ),
    (
        spec_dict(privateKey={"algorithm": "Ed25519", "encoding": "PKCS1"}),
        'spec.privateKey.encoding "PKCS1": Ed25519 keys can only be PKCS8',
    ),
    (
        spec_dict(privateKey={"rotationPolicy": "Sometimes"}),
        'spec.privateKey.rotationPolicy "Sometimes": must be Always or Never',
    ),
    # The Secret around the certificate.
    (spec_dict(secretTemplate="x"), 'spec.secretTemplate "x": must be an object'),
    (
        spec_dict(secretTemplate={"labels": ["team"]}),
        "spec.secretTemplate.labels ['team']: must be a map of strings",
    ),
    (
        spec_dict(secretTemplate={"labels": {"replicas": 3}}),
        "spec.secretTemplate.labels.replicas 3: must be a string",
    ),
    (
        spec_dict(secretTemplate={"labels": {"mtls.dev/revision": "9"}}),
        'spec.secretTemplate.labels.mtls.dev/revision "9": is reserved for the operator',
    ),
    (
        spec_dict(secretTemplate={"annotations": {"app.kubernetes.io/managed-by": "helm"}}),
        'spec.secretTemplate.annotations.app.kubernetes.io/managed-by "helm": is reserved for the operator',
    ),
    (
        spec_dict(secretDeletionPolicy="Orphan"),
        'spec.secretDeletionPolicy "Orphan": must be Delete or Retain',
    ),
    (spec_dict(caSecretName="Shop_CA"), f'spec.caSecretName "Shop_CA": {OBJECT_NAME_RULE}'),
    (spec_dict(caSecretName="Shop-CA"), f'spec.caSecretName "Shop-CA": {OBJECT_NAME_RULE}'),
    (spec_dict(caSecretName=7), "spec.caSecretName 7: must be a string"),
    (
        spec_dict(additionalOutputFormats="DER"),
        'spec.additionalOutputFormats "DER": must be a list',
    ),
    (
        spec_dict(additionalOutputFormats=[{"type": "DER"}, {"type": "JKS"}]),
        'spec.additionalOutputFormats[1] "JKS": must be CombinedPEM or DER',
    ),
    (
        spec_dict(additionalOutputFormats=["PEM"]),
        'spec.additionalOutputFormats[0] "PEM": must be CombinedPEM or DER',
    ),
    (spec_dict(keystores="pkcs12"), 'spec.keystores "pkcs12": must be an object'),
    (
        spec_dict(keystores={"pkcs12": "p12-pass"}),
        'spec.keystores.pkcs12 "p12-pass": must be an object',
    ),
    (
        spec_dict(keystores={"pkcs12": {}}),
        "spec.keystores.pkcs12.passwordSecretRef None: is required",
    ),
    (
        spec_dict(keystores={"pkcs12": {"passwordSecretRef": {"key": "pw"}}}),
        'spec.keystores.pkcs12.passwordSecretRef.name "": is required',
    ),
    (
        spec_dict(keystores={"pkcs12": {"passwordSecretRef": {"name": "P12"}}}),
        f'spec.keystores.pkcs12.passwordSecretRef.name "P12": {OBJECT_NAME_RULE}',
    ),
    (
        spec_dict(keystores={"pkcs12": {"passwordSecretRef": {"name": "p12", "key": 1}}}),
        "spec.keystores.pkcs12.passwordSecretRef.key 1: must be a string",
    ),
]


@pytest.mark.parametrize(
    ("spec", "message"), INVALID_SPECS, ids=[m.split(":")[0] for _, m in INVALID_SPECS]
)
def test_invalid_spec_names_field_and_value(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(spec, MIN_DURATION)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert message.startswith(f"spec.{caught.value.field_path} ")


def test_minimum_duration_is_the_callers() -> None:
    short = spec_dict(duration="10s", renewBefore="3s")
    assert parse_spec(short, td(seconds=1)).request.lifetime == td(seconds=10)
    with pytest.raises(
        InvalidSpec, match=r'^spec\.duration "10s": is shorter than the minimum 1m$'
    ):
        parse_spec(short, td(minutes=1))


@pytest.mark.parametrize(
    "name",
    [
        "10.0.0.1",
        "a" * 64,
        "a" * 253,
        ".".join(["b" * 63] * 4)[:253],
        "0",
        "9-tls",
        "payments.tls-v2",
    ],
    ids=[
        "ipv4-like",
        "64-char-label",
        "253-char-label",
        "253-chars-in-labels",
        "one-digit",
        "leading-digit",
        "dotted",
    ],
)
def test_secret_name_accepts_every_kubernetes_object_name(name: str) -> None:
    assert len(name) <= 253
    assert parse_spec(spec_dict(secretName=name), MIN_DURATION).secret_name == name
    assert parse_spec(spec_dict(caSecretName=name), MIN_DURATION).ca_secret_name == name
    keystores = {"pkcs12": {"passwordSecretRef": {"name": name}}}
    assert parse_spec(spec_dict(keystores=keystores), MIN_DURATION).pkcs12_password == (
        SecretKeyRef(name, "password")
    )


def test_secret_name_with_a_trailing_newline_is_invalid() -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec(spec_dict(secretName="payments-tls\n"), MIN_DURATION)
    assert str(caught.value) == f'spec.secretName "payments-tls\\n": {OBJECT_NAME_RULE}'


def test_secret_deletion_policy_null_is_the_default() -> None:
    parsed = parse_spec({**spec_dict(), "secretDeletionPolicy": None}, MIN_DURATION)
    assert parsed == default_spec()
    assert parsed.retain_secret is False


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
SPEC_FIELDS = [
    "secretName",
    "usage",
    "usages",
    "commonName",
    "dnsNames",
    "ipAddresses",
    "uris",
    "emailAddresses",
    "subject",
    "duration",
    "renewBefore",
    "renewBeforePercentage",
    "privateKey",
    "caSecretName",
    "secretTemplate",
    "secretDeletionPolicy",
    "additionalOutputFormats",
    "keystores",
]


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(field=st.sampled_from(SPEC_FIELDS), value=JSON_VALUES)
def test_any_value_of_any_field_is_parsed_or_rejected_as_invalid_spec(
    field: str, value: Any
) -> None:
    # A bad object must become InvalidSpec, never a crash of the operator.
    try:
        parse_spec({**spec_dict(), field: value}, MIN_DURATION)
    except InvalidSpec as err:
        message = str(err)
    else:
        return
    assert message.startswith("spec.")
    assert "\n" not in message


# --- renew_before (policy.renewal, from the parsed spec) ---


@pytest.mark.parametrize(
    ("fields", "lifetime", "expected"),
    [
        ({}, td(hours=2160), td(hours=720)),
        ({}, td(hours=30), td(hours=10)),
        ({"renewBefore": "720h"}, td(hours=2160), td(hours=720)),
        ({"renewBefore": "720h"}, td(hours=721), td(hours=720)),
        # The CA cut the lifetime to renewBefore or below: a third of what was granted.
        ({"renewBefore": "720h"}, td(hours=720), td(hours=240)),
        ({"renewBefore": "720h"}, td(hours=240), td(hours=80)),
        ({"renewBeforePercentage": 25}, td(hours=2160), td(hours=540)),
        ({"renewBeforePercentage": 1}, td(hours=100), td(hours=1)),
        ({"renewBeforePercentage": 99}, td(hours=100), td(hours=99)),
    ],
    ids=[
        "default-third",
        "default-third-of-granted",
        "explicit",
        "explicit-just-fits",
        "explicit-equal-to-lifetime",
        "explicit-beyond-lifetime",
        "percent-25",
        "percent-1",
        "percent-99",
    ],
)
def test_renew_before(fields: dict[str, Any], lifetime: td, expected: td) -> None:
    assert renew_before(parse_spec(spec_dict(**fields), MIN_DURATION), lifetime) == expected


def test_renew_before_longer_than_a_clamped_lifetime_falls_back_to_a_third() -> None:
    spec = parse_spec(spec_dict(renewBefore="720h"), MIN_DURATION)
    assert renew_before(spec, td(hours=240)) == td(hours=80)
    # Never the whole lifetime: renewing at the moment of issuance would loop.
    assert renew_before(spec, td(hours=720)) == td(hours=240)


# --- issuance_hash ---

HASH_CHANGES: list[tuple[dict[str, Any], bool]] = [
    ({"dnsNames": ["payments"]}, True),
    ({"dnsNames": ["payments", "payments.shop.svc", "payments.shop"]}, True),
    ({"ipAddresses": ["10.0.0.12"]}, True),
    ({"uris": ["spiffe://cluster.local/ns/shop/sa/payments"]}, True),
    ({"emailAddresses": ["ops@example.com"]}, True),
    ({"commonName": "payments"}, True),
    ({"subject": {"organizations": ["Shop"]}}, True),
    ({"subject": {"countries": ["DE"]}}, True),
    ({"usage": "both"}, True),
    ({"duration": "720h"}, True),
    ({"privateKey": {"algorithm": "RSA"}}, True),
    ({"privateKey": {"size": 384}}, True),
    ({"privateKey": {"encoding": "PKCS1"}}, True),
    ({"dnsNames": ["PAYMENTS", "payments", "payments.shop.svc"]}, False),
    ({"dnsNames": ["payments.shop.svc", "payments"]}, False),
    ({"duration": "2160h"}, False),
    ({"duration": "129600m"}, False),
    ({"privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8"}}, False),
    ({"privateKey": {"rotationPolicy": "Never"}}, False),
    ({"renewBefore": "24h"}, False),
    ({"renewBeforePercentage": 50}, False),
    ({"secretTemplate": {"labels": {"team": "payments"}, "annotations": {"a": "b"}}}, False),
    ({"secretDeletionPolicy": "Retain"}, False),
    ({"additionalOutputFormats": ["CombinedPEM", "DER"]}, False),
    ({"keystores": {"pkcs12": {"passwordSecretRef": {"name": "p12-pass"}}}}, False),
    ({"caSecretName": "shop-ca"}, False),
]


@pytest.mark.parametrize(
    ("fields", "changes"), HASH_CHANGES, ids=[f"{'-'.join(f)}-{c}" for f, c in HASH_CHANGES]
)
def test_issuance_hash_covers_what_goes_into_certificate_and_key(
    fields: dict[str, Any], changes: bool
) -> None:
    base = parse_spec(spec_dict(), MIN_DURATION).issuance_hash()
    changed = parse_spec(spec_dict(**fields), MIN_DURATION).issuance_hash()
    assert (changed != base) is changes


REORDERED_NAMES = [
    (
        "dnsNames",
        ["a.shop.svc", "b.shop.svc", "c.shop.svc"],
        ["c.shop.svc", "a.shop.svc", "b.shop.svc"],
    ),
    ("ipAddresses", ["10.0.0.2", "10.0.0.10", "::1"], ["::1", "10.0.0.10", "10.0.0.2"]),
    ("uris", ["spiffe://a/x", "https://b/y"], ["https://b/y", "spiffe://a/x"]),
    (
        "emailAddresses",
        ["ops@example.com", "dev@example.com"],
        ["dev@example.com", "ops@example.com"],
    ),
]


@pytest.mark.parametrize(
    ("field", "names", "reordered"), REORDERED_NAMES, ids=[f for f, _, _ in REORDERED_NAMES]
)
def test_issuance_hash_ignores_the_order_of_names(
    field: str, names: list[str], reordered: list[str]
) -> None:
    first = parse_spec(spec_dict(**{field: names}), MIN_DURATION)
    second = parse_spec(spec_dict(**{field: reordered}), MIN_DURATION)
    assert first.issuance_hash() == second.issuance_hash()
    # The same names, so the difference must be the order alone...
    assert first != second
    # ...while one name fewer is a change.
    fewer = parse_spec(spec_dict(**{field: names[:-1]}), MIN_DURATION)
    assert fewer.issuance_hash() != first.issuance_hash()


def test_issuance_hash_is_versioned_and_stable() -> None:
    first = parse_spec(spec_dict(), MIN_DURATION).issuance_hash()
    assert first == parse_spec(spec_dict(), MIN_DURATION).issuance_hash()
    prefix, digest = first.split(":")
    assert prefix == "v1"
    assert len(digest) == 32
    assert int(digest, 16) >= 0
