"""The MtlsCertificate CRD against a real API server: it installs, accepts every field the
operator understands, refuses at apply time what a schema can express, explains itself, and
prints a useful table."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.crd import API_VERSION, CRD_NAME, CRD_PATH, KIND, apply_crd, server_apply
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"

MINIMAL_SPEC: dict[str, Any] = {"secretName": "web-tls", "usage": "server", "commonName": "web"}

FULL_SPEC: dict[str, Any] = {
    "secretName": "payments-tls",
    "usage": "both",
    "commonName": "payments.shop.svc",
    "dnsNames": ["payments", "payments.shop.svc", "*.payments.shop.svc"],
    "ipAddresses": ["10.0.0.12", "fd00::12"],
    "uris": ["spiffe://cluster.local/ns/shop/sa/payments"],
    "emailAddresses": ["payments@shop.example"],
    "subject": {
        "organizations": ["Shop"],
        "organizationalUnits": ["Payments"],
        "countries": ["DE"],
        "provinces": ["Berlin"],
        "localities": ["Berlin"],
    },
    "duration": "8760h",
    "renewBefore": "1h30m",
    "privateKey": {
        "algorithm": "RSA",
        "size": 3072,
        "encoding": "PKCS1",
        "rotationPolicy": "Never",
    },
    "caSecretName": "shop-ca",
    "secretTemplate": {
        "labels": {"app.kubernetes.io/part-of": "shop", "team": "payments"},
        "annotations": {"example.com/owner": "payments team <payments@shop.example>"},
    },
    "secretDeletionPolicy": "Retain",
    "additionalOutputFormats": [{"type": "CombinedPEM"}, {"type": "DER"}],
    "keystores": {"pkcs12": {"passwordSecretRef": {"name": "p12-pass", "key": "password"}}},
}

# A status as the operator writes it; the status schema must take all of it.
FULL_STATUS: dict[str, Any] = {
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Issued",
            "message": "certificate issued, valid until 2027-02-26T12:00:00Z",
            "observedGeneration": 1,
            "lastTransitionTime": "2026-11-28T12:00:00Z",
        }
    ],
    "observedGeneration": 1,
    "notBefore": "2026-11-28T11:55:00Z",
    "notAfter": "2099-02-26T12:00:00Z",
    "renewalTime": "2099-01-27T12:00:00Z",
    "serialNumber": "4f2a9c0d1e",
    "fingerprintSHA256": "ab" * 32,
    "issuer": "CN=mtls-operator CA",
    "revision": 1,
    "lastFailureTime": "2026-11-28T11:00:00Z",
    "failedIssuanceAttempts": 0,
}


@pytest.fixture(autouse=True)
def no_operator(request: pytest.FixtureRequest) -> None:
    """The CRD alone, as the API server serves it: no operator writes statuses
    meanwhile (a test after this module starts it again)."""
    if "namespace" in request.fixturenames:
        operator_process: OperatorProcess = request.getfixturevalue("operator_process")
        operator_process.stop()


def manifest(spec: dict[str, Any], name: str = "cert") -> str:
    return json.dumps(
        {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}
    )


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `base` with top-level spec fields replaced; None removes the field."""
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def stored_spec(kubectl: Kubectl, namespace: str, name: str) -> Any:
    result = kubectl("get", "mtlscertificate", name, "-n", namespace, "-o", "json")
    return json.loads(result.stdout)["spec"]


def test_apply_crd_is_idempotent(kubectl: Kubectl, mtls_crd: None) -> None:
    apply_crd(kubectl)

    crd = json.loads(kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["mtlscert", "mcert"]
    assert names["listKind"] == "MtlsCertificateList"
    assert "mtls" in names["categories"]
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


# Valid combinations that the CEL rules must not catch by mistake.
ACCEPTED: dict[str, dict[str, Any]] = {
    "minimal": MINIMAL_SPEC,
    "full": FULL_SPEC,
    "full-with-renewBeforePercentage": with_changes(
        FULL_SPEC, renewBefore=None, renewBeforePercentage=33
    ),
    "only-dnsNames": with_changes(MINIMAL_SPEC, commonName=None, dnsNames=["web"]),
    "only-ipAddresses": with_changes(MINIMAL_SPEC, commonName="", ipAddresses=["10.0.0.1"]),
    "only-uris": with_changes(MINIMAL_SPEC, commonName=None, uris=["spiffe://td/web"]),
    "only-emailAddresses": with_changes(MINIMAL_SPEC, commonName=None, emailAddresses=["a@b.c"]),
    "Ed25519-PKCS8": with_changes(
        MINIMAL_SPEC, privateKey={"algorithm": "Ed25519", "encoding": "PKCS8"}
    ),
    "ECDSA-521-PKCS1": with_changes(MINIMAL_SPEC, privateKey={"size": 521, "encoding": "PKCS1"}),
    "RSA-default-size": with_changes(MINIMAL_SPEC, privateKey={"algorithm": "RSA"}),
    "fractional-durations": with_changes(MINIMAL_SPEC, duration="1.5h", renewBefore="45m30.5s"),
    # Empty means "the default" to the operator, so the schema lets it through.
    "empty-caSecretName-and-password-key": with_changes(
        MINIMAL_SPEC,
        caSecretName="",
        keystores={"pkcs12": {"passwordSecretRef": {"name": "p", "key": ""}}},
    ),
}


@pytest.mark.parametrize("spec", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_valid_certificate_is_accepted_as_written(
    kubectl: Kubectl, namespace: str, mtls_crd: None, spec: dict[str, Any]
) -> None:
    text = manifest(spec)
    server_apply(kubectl, namespace, text, "--dry-run=server")
    server_apply(kubectl, namespace, text)

    # Nothing pruned and no schema defaults: the operator owns defaulting, GitOps diffs stay clean.
    assert stored_spec(kubectl, namespace, "cert") == spec


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*-certificate.yaml")), ids=lambda p: p.stem)
def test_example_passes_schema_validation(
    kubectl: Kubectl, namespace: str, mtls_crd: None, path: Path
) -> None:
    result = server_apply(kubectl, namespace, path.read_text(), "--dry-run=server")
    assert "serverside-applied (server dry run)" in result.stdout


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLES.glob("*-certificate.yaml")}
    assert {"server-certificate.yaml", "client-certificate.yaml"} <= names


def without(key: str) -> dict[str, Any]:
    return with_changes(MINIMAL_SPEC, **{key: None})


def private_key(**fields: Any) -> dict[str, Any]:
    return with_changes(MINIMAL_SPEC, privateKey=fields)


NO_IDENTITY = "spec: Required value: at least one identity is required: set commonName, dnsNames, ipAddresses, uris or emailAddresses"

# (spec, what the API server's answer must contain): the field path and the reason.
REFUSED: dict[str, tuple[dict[str, Any], list[str]]] = {
    "missing-secretName": (without("secretName"), ["spec.secretName: Required value"]),
    "empty-secretName": (
        with_changes(MINIMAL_SPEC, secretName=""),
        ["spec.secretName: Invalid value", "at least 1 chars long"],
    ),
    "upper-case-secretName": (
        with_changes(MINIMAL_SPEC, secretName="Web-TLS"),
        ['spec.secretName: Invalid value: "Web-TLS"', "should match"],
    ),
    "missing-usage": (without("usage"), ["spec.usage: Required value"]),
    "bad-usage": (
        with_changes(MINIMAL_SPEC, usage="mutual"),
        ['spec.usage: Unsupported value: "mutual": supported values: "server", "client", "both"'],
    ),
    "commonName-65-chars": (
        with_changes(MINIMAL_SPEC, commonName="c" * 65),
        ["spec.commonName: Too long: may not be more than 64"],
    ),
    "no-identity": (without("commonName"), [NO_IDENTITY]),
    "only-empty-identities": (
        with_changes(MINIMAL_SPEC, commonName="", dnsNames=[], uris=[]),
        [NO_IDENTITY],
    ),
    "renewBefore-and-percentage": (
        with_changes(MINIMAL_SPEC, renewBefore="720h", renewBeforePercentage=33),
        [
            "spec.renewBeforePercentage: Forbidden: set renewBefore or renewBeforePercentage, not both"
        ],
    ),
    "percentage-0": (
        with_changes(MINIMAL_SPEC, renewBeforePercentage=0),
        ["spec.renewBeforePercentage: Invalid value: 0", "greater than or equal to 1"],
    ),
    "percentage-100": (
        with_changes(MINIMAL_SPEC, renewBeforePercentage=100),
        ["spec.renewBeforePercentage: Invalid value: 100", "less than or equal to 99"],
    ),
    "duration-in-days": (
        with_changes(MINIMAL_SPEC, duration="90d"),
        ['spec.duration: Invalid value: "90d"', "should match"],
    ),
    "negative-renewBefore": (
        with_changes(MINIMAL_SPEC, renewBefore="-1h"),
        ['spec.renewBefore: Invalid value: "-1h"', "should match"],
    ),
    "renewBefore-not-shorter-than-duration": (
        with_changes(MINIMAL_SPEC, duration="24h", renewBefore="1440m"),
        ["spec.renewBefore: Invalid value: renewBefore must be shorter than duration"],
    ),
    "renewBefore-not-shorter-than-default-duration": (
        with_changes(MINIMAL_SPEC, renewBefore="2160h"),
        [
            "spec.renewBefore: Invalid value: renewBefore must be shorter than duration (default 2160h)"
        ],
    ),
    "Ed25519-with-size": (
        private_key(algorithm="Ed25519", size=256),
        ["spec.privateKey.size: Forbidden: Ed25519 keys have a fixed size"],
    ),
    "ECDSA-size-2048": (
        private_key(algorithm="ECDSA", size=2048),
        ["spec.privateKey.size: Invalid value: ECDSA privateKey.size must be 256, 384 or 521"],
    ),
    "default-algorithm-size-2048": (
        private_key(size=2048),
        ["spec.privateKey.size: Invalid value: ECDSA privateKey.size must be 256, 384 or 521"],
    ),
    "RSA-size-1024": (
        private_key(algorithm="RSA", size=1024),
        ["spec.privateKey.size: Invalid value: RSA privateKey.size must be 2048, 3072 or 4096"],
    ),
    "Ed25519-PKCS1": (
        private_key(algorithm="Ed25519", encoding="PKCS1"),
        ["spec.privateKey.encoding: Invalid value: Ed25519 keys can only be PKCS8"],
    ),
    "lower-case-algorithm": (
        private_key(algorithm="ecdsa"),
        ['spec.privateKey.algorithm: Unsupported value: "ecdsa"'],
    ),
    "bad-rotationPolicy": (
        private_key(rotationPolicy="Sometimes"),
        ['spec.privateKey.rotationPolicy: Unsupported value: "Sometimes"'],
    ),
    "bad-secretDeletionPolicy": (
        with_changes(MINIMAL_SPEC, secretDeletionPolicy="Orphan"),
        [
            'spec.secretDeletionPolicy: Unsupported value: "Orphan": supported values: "Delete", "Retain"'
        ],
    ),
    "bad-additionalOutputFormat": (
        with_changes(MINIMAL_SPEC, additionalOutputFormats=[{"type": "PKCS12"}]),
        ['spec.additionalOutputFormats[0].type: Unsupported value: "PKCS12"'],
    ),
    "additionalOutputFormat-as-string": (
        with_changes(MINIMAL_SPEC, additionalOutputFormats=["DER"]),
        [".spec.additionalOutputFormats[0]: expected map"],
    ),
    "country-3-letters": (
        with_changes(MINIMAL_SPEC, subject={"countries": ["DEU"]}),
        ["spec.subject.countries[0]: Too long: may not be more than 2"],
    ),
    "reserved-secret-label": (
        with_changes(MINIMAL_SPEC, secretTemplate={"labels": {"mtls.dev/owner": "me"}}),
        [
            "spec.secretTemplate.labels: Forbidden: keys under mtls.dev/ and app.kubernetes.io/managed-by are reserved"
        ],
    ),
    "bad-secret-label-value": (
        with_changes(MINIMAL_SPEC, secretTemplate={"labels": {"team": "pay ments"}}),
        ['spec.secretTemplate.labels.team: Invalid value: "pay ments"'],
    ),
    "bad-secret-annotation-key": (
        with_changes(MINIMAL_SPEC, secretTemplate={"annotations": {"owned by": "payments"}}),
        ["spec.secretTemplate.annotations: Invalid value: annotation keys must be qualified names"],
    ),
    "pkcs12-without-password": (
        with_changes(MINIMAL_SPEC, keystores={"pkcs12": {}}),
        ["spec.keystores.pkcs12.passwordSecretRef: Required value"],
    ),
    "unknown-spec-field": (
        with_changes(MINIMAL_SPEC, commonNames=["web"]),
        [".spec.commonNames: field not declared in schema"],
    ),
}


@pytest.mark.parametrize(("spec", "expected"), REFUSED.values(), ids=REFUSED.keys())
def test_invalid_certificate_is_refused_at_apply_time(
    kubectl: Kubectl, namespace: str, mtls_crd: None, spec: dict[str, Any], expected: list[str]
) -> None:
    result = server_apply(kubectl, namespace, manifest(spec), check=False)

    assert result.returncode != 0, result.stdout
    for fragment in expected:
        assert fragment in result.stderr, result.stderr


def test_unknown_field_is_refused_by_strict_field_validation(
    kubectl: Kubectl, namespace: str, mtls_crd: None
) -> None:
    text = manifest(with_changes(MINIMAL_SPEC, renewBeforePercent=33))
    # Client-side apply leaves unknown fields to the server's field validation.
    result = kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=text, check=False
    )

    assert result.returncode != 0
    assert 'unknown field "spec.renewBeforePercent"' in result.stderr


def schema_fields(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property below `schema`, through arrays and maps, as (dotted path, schema)."""
    for name, child in schema.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from schema_fields(child, f"{path}.{name}")
    for nested in ("items", "additionalProperties"):
        if isinstance(schema.get(nested), dict):
            yield from schema_fields(schema[nested], path)


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_every_field_has_a_description() -> None:
    undocumented = [
        path
        for path, schema in schema_fields(crd_schema(), "mtlscertificate")
        if path != "mtlscertificate.metadata" and not schema.get("description", "").strip()
    ]
    assert undocumented == []


def flowed(text: str) -> str:
    """`text` with its line breaks and indentation folded, as kubectl explain re-wraps it."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    "field", ["spec", "spec.privateKey", "spec.keystores.pkcs12.passwordSecretRef", "status"]
)
def test_explain_describes_every_field(kubectl: Kubectl, mtls_crd: None, field: str) -> None:
    schema = crd_schema()
    for part in field.split("."):
        schema = schema["properties"][part]

    explained = flowed(kubectl("explain", f"mtlscertificate.{field}").stdout)

    assert flowed(schema["description"]) in explained
    for name, child in schema["properties"].items():
        assert f"{name} <" in explained, name
        assert flowed(child["description"]) in explained, name


def test_explain_a_leaf_field(kubectl: Kubectl, mtls_crd: None) -> None:
    explained = flowed(kubectl("explain", "mtlscertificate.spec.privateKey.size").stdout)

    assert "FIELD: size <integer>" in explained
    assert "ECDSA: 256 (default, P-256), 384 (P-384) or 521 (P-521)" in explained


def table(kubectl: Kubectl, *args: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows keyed by column header; an empty cell is ""."""
    head, *rows = kubectl("get", *args).stdout.splitlines()
    # Cells are aligned under their headers, and empty ones are blank, so split by position.
    starts = [(match.start(), match.group()) for match in re.finditer(r"\S+", head)]
    ends = [start for start, _ in starts[1:]] + [None]
    return [
        {name: row[start:end].strip() for (start, name), end in zip(starts, ends, strict=True)}
        for row in rows
    ]


def header(kubectl: Kubectl, *args: str) -> list[str]:
    return kubectl("get", *args).stdout.splitlines()[0].split()


def test_short_names_and_printer_columns(kubectl: Kubectl, namespace: str, mtls_crd: None) -> None:
    server_apply(kubectl, namespace, manifest(MINIMAL_SPEC, name="web"))
    columns = ["NAME", "READY", "SECRET", "USAGE", "EXPIRES", "RENEWAL", "AGE"]

    for resource in ("mtlscertificates", "mtlscertificate", "mtlscert", "mcert", "mtls"):
        assert header(kubectl, resource, "-n", namespace) == columns, resource
    assert header(kubectl, "mcert", "-n", namespace, "-o", "wide") == [
        *columns[:-1],
        "REASON",
        "AGE",
    ]
    (row,) = table(kubectl, "mcert", "web", "-n", namespace, "-o", "wide")
    assert row | {"AGE": ""} == {
        "NAME": "web",
        "READY": "",
        "SECRET": "web-tls",
        "USAGE": "server",
        "EXPIRES": "",
        "RENEWAL": "",
        "REASON": "",
        "AGE": "",
    }


def test_status_subresource_takes_the_operator_status(
    kubectl: Kubectl, namespace: str, mtls_crd: None
) -> None:
    server_apply(kubectl, namespace, manifest(MINIMAL_SPEC, name="web"))

    kubectl(
        "patch",
        "mtlscertificate",
        "web",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": FULL_STATUS}),
    )

    stored = json.loads(kubectl("get", "mcert", "web", "-n", namespace, "-o", "json").stdout)
    assert stored["status"] == FULL_STATUS
    kubectl("wait", "--for=condition=Ready", "mtlscertificate/web", "-n", namespace, "--timeout=5s")
    (row,) = table(kubectl, "mcert", "web", "-n", namespace, "-o", "wide")
    assert (row["READY"], row["REASON"]) == ("True", "Issued")
    # Timestamps, not ages: kubectl shows a future time in a date column as "<invalid>".
    assert (row["EXPIRES"], row["RENEWAL"]) == (FULL_STATUS["notAfter"], FULL_STATUS["renewalTime"])
