from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_operator.api.managed_secret import (
    RENEWAL_REQUEST_ANNOTATION,
    KnownKeyPair,
    LeafFacts,
    SecretFacts,
    issuance_record,
    issued_leaf_facts,
    new_secret,
    read_secret,
    secret_patch,
)
from mtls_operator.api.outputs import MANAGED_DATA_KEYS
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.timestamps import format_timestamp, parse_timestamp
from mtls_operator.certificates.content import issue_secret_content
from mtls_operator.pki import CertificateAuthority, KeySpec, load_private_key
from mtls_operator.pki.keys import private_key_to_pem

from support.authorities import intermediate_authority
from support.clock import NOW
from support.objects import (
    CERTIFICATE,
    apply_merge_patch,
    certificate_spec,
    secret_body,
    secret_data,
    with_data,
    with_metadata,
)

td = datetime.timedelta
MTLS_OWNER = {
    "apiVersion": "mtls.dev/v1alpha1",
    "kind": "MtlsCertificate",
    "name": "payments",
    "uid": "uid-payments",
}
FOREIGN_OWNER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "name": "payments",
    "uid": "uid-deploy",
}
MANAGED_BY = "app.kubernetes.io/managed-by"


@pytest.fixture(scope="module")
def body(ecdsa_ca: CertificateAuthority) -> dict[str, Any]:
    return secret_body(certificate_spec(), ecdsa_ca)


def pem_body_lines(pem: bytes) -> list[str]:
    """The base64 lines of a PEM block: the key material itself."""
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


# --- read_secret ---


def test_secrets_with_the_same_data_keys_and_ca_share_them(body: dict[str, Any]) -> None:
    first, second = (read_secret(json.loads(json.dumps(body))) for _ in range(2))
    assert first.data_keys is second.data_keys
    assert first.trust_bundle_sha256 is second.trust_bundle_sha256


def test_data_keys_of_someone_else_are_not_shared(body: dict[str, Any]) -> None:
    foreign = with_data(body, {"app.conf": b"x"})
    first, second = read_secret(foreign), read_secret(foreign)
    assert first.data_keys == second.data_keys == {"tls.crt", "tls.key", "ca.crt", "app.conf"}
    assert first.data_keys is not second.data_keys


def test_read_secret_of_a_good_secret(body: dict[str, Any], ecdsa_ca: CertificateAuthority) -> None:
    facts = read_secret(body)
    leaf = x509.load_pem_x509_certificate(secret_data(body)["tls.crt"])
    assert (facts.namespace, facts.name, facts.uid, facts.resource_version) == (
        "shop",
        "payments-tls",
        "uid-secret",
        "100",
    )
    assert facts.secret_type == "kubernetes.io/tls"
    assert facts.problem is None
    assert facts.key_matches is True
    assert facts.managed is True
    assert facts.annotations["mtls.dev/certificate"] == "payments"
    assert facts.owner_uids == {"uid-payments"}
    assert facts.revision == 1
    assert facts.issued_at == NOW
    assert facts.data_keys == {"tls.crt", "tls.key", "ca.crt"}
    assert facts.trust_bundle_sha256 == hashlib.sha256(ecdsa_ca.trust_bundle_pem).hexdigest()
    assert facts.leaf == LeafFacts(
        serial_number=format(leaf.serial_number, "x"),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        not_before=NOW - td(minutes=5),
        not_after=NOW + td(hours=2160),
        issuer="CN=Test Root CA",
        authority_key_id=ecdsa_ca.key_identifier,
    )


def test_read_secret_of_an_empty_object() -> None:
    facts = read_secret({})
    assert (facts.namespace, facts.name, facts.uid, facts.resource_version) == ("", "", "", "")
    assert facts.problem == "tls.crt is missing or empty"
    assert facts.managed is False
    assert facts.leaf is None
    assert facts.data_keys == frozenset()
    assert facts.trust_bundle_sha256 is None
    assert facts.revision == 0
    assert facts.issued_at is None


def encrypted_own_key(body: Mapping[str, Any]) -> bytes:
    key = load_private_key(secret_data(body)["tls.key"])
    return private_key_to_pem(key, passphrase=b"s3cret")


OTHER_KEY = private_key_to_pem(KeySpec().generate())
PEM_GARBAGE_KEY = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
PEM_GARBAGE_CERTIFICATE = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


@dataclass(frozen=True)
class Broken:
    """A Secret with `changes` to its data, and what read_secret must say."""

    name: str
    changes: Mapping[str, bytes | None]
    problem: str | None  # a trailing "..." means: starts with
    leaf_read: bool = False


BROKEN_SECRETS = [
    Broken("no-certificate", {"tls.crt": None}, "tls.crt is missing or empty"),
    Broken("empty-certificate", {"tls.crt": b""}, "tls.crt is missing or empty"),
    Broken("no-key", {"tls.key": None}, "tls.key is missing or empty"),
    Broken("no-bundle", {"ca.crt": None}, "ca.crt is missing or empty"),
    Broken(
        "garbage-certificate",
        {"tls.crt": b"not a certificate"},
        "tls.crt is not a certificate: the data is neither a PEM nor a DER certificate",
    ),
    Broken(
        "malformed-pem-certificate",
        {"tls.crt": PEM_GARBAGE_CERTIFICATE},
        "tls.crt is not a certificate: the PEM certificate data is malformed: ...",
    ),
    Broken(
        "certificate-as-key",
        {"tls.key": PEM_GARBAGE_CERTIFICATE},
        "tls.key is unusable: the private key is not PEM (expected '-----BEGIN ... PRIVATE KEY-----')",
        leaf_read=True,
    ),
    Broken(
        "malformed-pem-key",
        {"tls.key": PEM_GARBAGE_KEY},
        "tls.key is unusable: the private key could not be parsed: ...",
        leaf_read=True,
    ),
    # Readable, but the pair does not belong together: key_mismatch decides.
    Broken(
        "key-of-another-pair",
        {"tls.key": OTHER_KEY},
        None,
        leaf_read=True,
    ),
]


@pytest.mark.parametrize("case", BROKEN_SECRETS, ids=lambda c: c.name)
def test_read_secret_of_a_broken_secret(body: dict[str, Any], case: Broken) -> None:
    facts = read_secret(with_data(body, case.changes))
    if case.problem is not None and case.problem.endswith("..."):
        assert facts.problem is not None
        assert facts.problem.startswith(case.problem[:-3])
    else:
        assert facts.problem == case.problem
    assert facts.key_matches is False
    assert (facts.leaf is not None) is case.leaf_read
    assert facts.managed is True


def test_encrypted_key_is_unusable_and_its_material_never_shown(body: dict[str, Any]) -> None:
    encrypted = encrypted_own_key(body)
    facts = read_secret(with_data(body, {"tls.key": encrypted}))
    assert (
        facts.problem
        == "tls.key is unusable: the private key is encrypted and no passphrase was given"
    )
    assert facts.key_matches is False
    assert facts.leaf is not None
    shown = repr(facts)
    assert not any(line in shown for line in pem_body_lines(encrypted))
    assert "-----BEGIN" not in shown


def test_facts_have_no_field_for_key_material() -> None:
    # Not even the PEM header line of tls.key: nothing of the key is kept.
    assert [f.name for f in fields(SecretFacts)] == [
        "namespace",
        "name",
        "uid",
        "resource_version",
        "labels",
        "annotations",
        "owner_references",
        "data_keys",
        "secret_type",
        "problem",
        "key_matches",
        "leaf",
        "trust_bundle_sha256",
    ]


@pytest.mark.parametrize("case", BROKEN_SECRETS, ids=lambda c: c.name)
def test_facts_never_hold_key_material(body: dict[str, Any], case: Broken) -> None:
    facts = read_secret(with_data(body, case.changes))
    shown = repr(facts)
    for key_pem in (secret_data(body)["tls.key"], OTHER_KEY):
        assert not any(line in shown for line in pem_body_lines(key_pem))
    assert "\n" not in (facts.problem or "")


def test_data_that_is_not_base64_counts_as_empty(body: dict[str, Any]) -> None:
    broken = with_data(body, {})
    broken["data"]["tls.crt"] = "!!! not base64 !!!"
    facts = read_secret(broken)
    assert facts.problem == "tls.crt is missing or empty"
    assert "tls.crt" in facts.data_keys


@pytest.mark.parametrize(
    ("annotation", "revision"),
    [("7", 7), ("", 0), ("seven", 0)],
)
def test_revision_from_annotation(body: dict[str, Any], annotation: str, revision: int) -> None:
    facts = read_secret(with_metadata(body, annotations={"mtls.dev/revision": annotation}))
    assert facts.revision == revision


# --- read_secret of a key pair the operator has just written ---


def just_written(
    ca: CertificateAuthority, spec_fields: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], KnownKeyPair]:
    """A Secret as the API returns it after an issuance, and what the
    reconciler knows of the pair it wrote."""
    spec = certificate_spec(**(spec_fields or {}))
    content = issue_secret_content(spec, ca, NOW)
    record = issuance_record(spec, content.issued, ca, issued_at=NOW, revision=1)
    body = new_secret(CERTIFICATE, spec, content.data, record)
    body["metadata"].update(uid="uid-secret", resourceVersion="100")
    known = KnownKeyPair(
        content.data["tls.crt"],
        content.data["tls.key"],
        issued_leaf_facts(content.issued.certificate, ca.subject, ca.key_identifier),
    )
    return body, known


@pytest.mark.parametrize("authority", ["root", "intermediate"])
@pytest.mark.parametrize("key", ["ECDSA", "RSA", "Ed25519"])
def test_facts_of_a_known_key_pair_are_those_read_from_the_secret(
    ecdsa_ca: CertificateAuthority, authority: str, key: str
) -> None:
    ca = ecdsa_ca if authority == "root" else intermediate_authority(ecdsa_ca)
    body, known = just_written(ca, {"privateKey": {"algorithm": key}})
    assert read_secret(body, known) == read_secret(body)
    assert read_secret(body, known).leaf is known.leaf


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"ca.crt": None}, "ca.crt is missing or empty"),
        ({"tls.key": OTHER_KEY}, None),
        ({"tls.crt": b"not a certificate"}, "tls.crt is not a certificate: ..."),
    ],
    ids=["no-bundle", "other-key", "other-certificate"],
)
def test_a_known_key_pair_that_is_not_in_the_secret_is_not_trusted(
    ecdsa_ca: CertificateAuthority, changes: Mapping[str, bytes | None], problem: str | None
) -> None:
    body, known = just_written(ecdsa_ca)
    changed = with_data(body, changes)
    facts = read_secret(changed, known)
    assert facts == read_secret(changed)
    assert facts.key_matches is False
    if problem is not None and problem.endswith("..."):
        assert facts.problem is not None
        assert facts.problem.startswith(problem[:-3])
    else:
        assert facts.problem == problem


# --- Timestamps ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T12:00:00Z", NOW),
        ("2026-11-28T13:00:00+01:00", NOW),
        ("2026-11-28T12:00:00", NOW),
        ("2026-11-28T12:00:00.5Z", NOW + td(milliseconds=500)),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_timestamp(text: str | None, expected: datetime.datetime | None) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (NOW, "2026-11-28T12:00:00Z"),
        (NOW + td(microseconds=999_999), "2026-11-28T12:00:00Z"),
        (NOW.astimezone(datetime.timezone(td(hours=-5))), "2026-11-28T12:00:00Z"),
    ],
    ids=["utc", "sub-second-dropped", "other-zone"],
)
def test_format_timestamp_is_rfc3339_utc(moment: datetime.datetime, text: str) -> None:
    assert format_timestamp(moment) == text


# --- new_secret ---

TEMPLATE = {
    "secretTemplate": {
        "labels": {"team": "payments", "tier": "backend"},
        "annotations": {"example.com/owner": "ops"},
    }
}


def test_new_secret_layout(ecdsa_ca: CertificateAuthority) -> None:
    spec = certificate_spec(**TEMPLATE)
    created = secret_body(spec, ecdsa_ca, revision=3)
    data = secret_data(created)
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    assert created["apiVersion"] == "v1"
    assert created["kind"] == "Secret"
    assert created["type"] == "kubernetes.io/tls"
    assert created["metadata"]["name"] == "payments-tls"
    assert created["metadata"]["namespace"] == "shop"
    assert created["metadata"]["labels"] == {
        "team": "payments",
        "tier": "backend",
        MANAGED_BY: "mtls-operator",
    }
    assert created["metadata"]["annotations"] == {
        "example.com/owner": "ops",
        "mtls.dev/certificate": "payments",
        "mtls.dev/certificate-uid": "uid-payments",
        "mtls.dev/template-labels": "team,tier",
        "mtls.dev/template-annotations": "example.com/owner",
        "mtls.dev/spec-hash": spec.issuance_hash(),
        "mtls.dev/ca-fingerprint": ecdsa_ca.fingerprint,
        "mtls.dev/serial": format(leaf.serial_number, "x"),
        "mtls.dev/not-after": "2027-02-26T12:00:00Z",
        "mtls.dev/issued-at": "2026-11-28T12:00:00Z",
        "mtls.dev/revision": "3",
    }
    assert created["metadata"]["ownerReferences"] == [MTLS_OWNER]
    assert set(created["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert base64.b64decode(created["data"]["ca.crt"]) == ecdsa_ca.trust_bundle_pem


def test_new_secret_without_owner_reference_under_retain(ecdsa_ca: CertificateAuthority) -> None:
    created = secret_body(certificate_spec(secretDeletionPolicy="Retain"), ecdsa_ca)
    assert "ownerReferences" not in created["metadata"]
    assert created["metadata"]["annotations"]["mtls.dev/template-labels"] == ""
    assert created["metadata"]["labels"] == {MANAGED_BY: "mtls-operator"}


def test_issuance_record_notes_the_renewal_request_it_honoured(
    ecdsa_ca: CertificateAuthority,
) -> None:
    spec = certificate_spec()
    content = issue_secret_content(spec, ecdsa_ca, NOW)
    record = issuance_record(
        spec,
        content.issued,
        ecdsa_ca,
        issued_at=NOW,
        revision=4,
        renewal_request="2026-11-28T11:59:00Z",
    )
    assert RENEWAL_REQUEST_ANNOTATION == "mtls.dev/renewal-request-honoured"
    assert record == {
        "mtls.dev/spec-hash": spec.issuance_hash(),
        "mtls.dev/ca-fingerprint": ecdsa_ca.fingerprint,
        "mtls.dev/serial": format(content.issued.certificate.serial_number, "x"),
        "mtls.dev/not-after": "2027-02-26T12:00:00Z",
        "mtls.dev/issued-at": "2026-11-28T12:00:00Z",
        "mtls.dev/revision": "4",
        "mtls.dev/renewal-request-honoured": "2026-11-28T11:59:00Z",
    }
    # No request (or an empty one): nothing to record.
    for request in (None, ""):
        unrequested = issuance_record(
            spec, content.issued, ecdsa_ca, issued_at=NOW, revision=4, renewal_request=request
        )
        assert unrequested == {
            k: v for k, v in record.items() if k != "mtls.dev/renewal-request-honoured"
        }


def test_issuance_record_takes_time_and_revision_by_keyword_only(
    ecdsa_ca: CertificateAuthority,
) -> None:
    spec = certificate_spec()
    content = issue_secret_content(spec, ecdsa_ca, NOW)
    with pytest.raises(TypeError):
        issuance_record(spec, content.issued, ecdsa_ca, NOW, 1)  # type: ignore[call-arg]


def test_owner_reference_does_not_block_deletion_of_the_certificate() -> None:
    # A controller reference with blockOwnerDeletion would make deleting the
    # MtlsCertificate wait on the Secret.
    assert CERTIFICATE.owner_reference() == MTLS_OWNER


# --- secret_patch ---


@pytest.fixture(scope="module")
def lived_in(ecdsa_ca: CertificateAuthority) -> dict[str, Any]:
    """A Secret written for an older spec (two template labels, an owner
    annotation, CombinedPEM) by a previous incarnation of the certificate,
    then touched by other tools."""
    old_spec = certificate_spec(**TEMPLATE, additionalOutputFormats=["CombinedPEM"])
    previous = CertificateRef("shop", "payments", "uid-previous")
    written = secret_body(old_spec, ecdsa_ca, owner=previous, resource_version="4711")
    return with_metadata(
        written,
        labels={"kustomize.toolkit.fluxcd.io/name": "apps"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        owner_references=[FOREIGN_OWNER, previous.owner_reference()],
    )


def repair(lived_in: dict[str, Any], **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = certificate_spec(**fields)
    patch = secret_patch(
        read_secret(lived_in),
        CERTIFICATE,
        spec,
        data={},
        record=None,
    )
    return patch, apply_merge_patch(lived_in, patch)


def test_patch_carries_the_resource_version(lived_in: dict[str, Any]) -> None:
    patch, _ = repair(lived_in)
    assert patch["metadata"]["resourceVersion"] == "4711"


def test_patch_keeps_foreign_metadata_and_removes_stale_template_keys(
    lived_in: dict[str, Any],
) -> None:
    _, result = repair(lived_in, secretTemplate={"labels": {"team": "checkout"}})
    assert result["metadata"]["labels"] == {
        "team": "checkout",
        "kustomize.toolkit.fluxcd.io/name": "apps",
        MANAGED_BY: "mtls-operator",
    }
    annotations = result["metadata"]["annotations"]
    assert "example.com/owner" not in annotations
    assert annotations["kubectl.kubernetes.io/last-applied-configuration"] == "{}"
    assert annotations["mtls.dev/certificate-uid"] == "uid-payments"
    assert annotations["mtls.dev/template-labels"] == "team"
    assert annotations["mtls.dev/template-annotations"] == ""
    # Without a new issuance, the record of the last one stays.
    assert (
        annotations["mtls.dev/spec-hash"]
        == lived_in["metadata"]["annotations"]["mtls.dev/spec-hash"]
    )
    assert annotations["mtls.dev/revision"] == "1"


@pytest.mark.parametrize(
    ("fields", "owners"),
    [
        ({}, [FOREIGN_OWNER, MTLS_OWNER]),
        ({"secretDeletionPolicy": "Retain"}, [FOREIGN_OWNER]),
    ],
    ids=["delete", "retain"],
)
def test_patch_replaces_certificate_owner_references_only(
    lived_in: dict[str, Any], fields: dict[str, Any], owners: list[dict[str, str]]
) -> None:
    _, result = repair(lived_in, **fields)
    assert result["metadata"]["ownerReferences"] == owners


def test_patch_removes_stale_data_keys_and_keeps_the_rest(lived_in: dict[str, Any]) -> None:
    patch, result = repair(lived_in)
    assert patch["data"] == {"tls-combined.pem": None}
    assert result["data"] == {k: v for k, v in lived_in["data"].items() if k != "tls-combined.pem"}


def test_patch_keeps_foreign_data_keys(lived_in: dict[str, Any]) -> None:
    # Someone else's keys in the Secret are theirs: only the operator's own
    # stale keys are removed.
    assert "app.properties" not in MANAGED_DATA_KEYS
    foreign = with_data(lived_in, {"app.properties": b"mode=strict\n"})
    patch, result = repair(foreign)
    assert patch["data"] == {"tls-combined.pem": None}
    assert set(result["data"]) == {"tls.crt", "tls.key", "ca.crt", "app.properties"}
    assert secret_data(result)["app.properties"] == b"mode=strict\n"


def test_managed_data_keys_are_every_output_the_operator_writes() -> None:
    assert sorted(MANAGED_DATA_KEYS) == [
        "ca.crt",
        "key.der",
        "keystore.p12",
        "tls-combined.pem",
        "tls.crt",
        "tls.key",
        "truststore.p12",
    ]


def test_patch_of_an_issuance_writes_data_and_record(
    lived_in: dict[str, Any], ecdsa_ca: CertificateAuthority
) -> None:
    spec = certificate_spec(additionalOutputFormats=["DER"])
    later = NOW + td(days=1)
    content = issue_secret_content(spec, ecdsa_ca, later)
    record = issuance_record(spec, content.issued, ecdsa_ca, issued_at=later, revision=2)
    patch = secret_patch(
        read_secret(lived_in),
        CERTIFICATE,
        spec,
        data=content.data,
        record=record,
    )
    result = apply_merge_patch(lived_in, patch)
    assert secret_data(result) == content.data
    assert set(result["data"]) == {"tls.crt", "tls.key", "ca.crt", "key.der"}
    annotations = result["metadata"]["annotations"]
    assert {k: annotations[k] for k in record} == record
    assert annotations["mtls.dev/revision"] == "2"
    assert annotations["mtls.dev/issued-at"] == "2026-11-29T12:00:00Z"
    assert annotations["mtls.dev/spec-hash"] == spec.issuance_hash()
    facts = read_secret(result)
    assert facts.problem is None
    assert facts.key_matches is True
    assert facts.issued_at == later
    assert RENEWAL_REQUEST_ANNOTATION not in annotations


def test_patch_of_an_issuance_records_the_honoured_request_and_a_repair_keeps_it(
    lived_in: dict[str, Any], ecdsa_ca: CertificateAuthority
) -> None:
    spec = certificate_spec()
    content = issue_secret_content(spec, ecdsa_ca, NOW)
    record = issuance_record(
        spec, content.issued, ecdsa_ca, issued_at=NOW, revision=2, renewal_request="r-1"
    )
    issued = apply_merge_patch(
        lived_in,
        secret_patch(
            read_secret(lived_in),
            CERTIFICATE,
            spec,
            data=content.data,
            record=record,
        ),
    )
    assert issued["metadata"]["annotations"][RENEWAL_REQUEST_ANNOTATION] == "r-1"
    _, repaired = repair(issued, secretTemplate={"labels": {"team": "checkout"}})
    assert repaired["metadata"]["annotations"][RENEWAL_REQUEST_ANNOTATION] == "r-1"


def test_facts_of_an_unarmoured_key_hold_none_of_it(body: dict[str, Any]) -> None:
    key = load_private_key(secret_data(body)["tls.key"])
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    unarmoured = base64.b64encode(der)
    facts = read_secret(with_data(body, {"tls.key": unarmoured}))
    assert facts.problem == (
        "tls.key is unusable: the private key is not PEM "
        "(expected '-----BEGIN ... PRIVATE KEY-----')"
    )
    assert facts.key_matches is False
    assert unarmoured.decode()[:40] not in repr(facts)
