"""The Secrets the operator writes: their labels and annotations, the facts
a decision needs (read back without keeping the private key around), and
the bodies and patches that write them."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_operator.api.kept import kept, kept_mapping
from mtls_operator.api.outputs import CA_CRT, MANAGED_DATA_KEYS, TLS_CRT, TLS_KEY
from mtls_operator.api.resources import API_VERSION, KIND, CertificateRef
from mtls_operator.api.secret_data import decode_data, encode_data
from mtls_operator.api.spec import CertificateSpec
from mtls_operator.api.timestamps import format_timestamp, parse_timestamp
from mtls_operator.pki import (
    CertificateAuthority,
    CertificateLoadError,
    IssuedCertificate,
    KeyLoadError,
    load_certificates,
    load_private_key,
)
from mtls_operator.pki.certs import fingerprint_sha256, serial_hex

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "mtls-operator"
SECRET_TYPE = "kubernetes.io/tls"
# What the operator's own objects are listed and watched by (a server-side
# selector): never every Secret of the cluster.
MANAGED_SELECTOR = {"labelSelector": f"{MANAGED_BY_LABEL}={MANAGER}"}

# What a Secret records about the issuance that produced it. The Secret is
# the source of truth: after a restart, or when a status write was lost, the
# operator rebuilds its view from these.
CERTIFICATE_ANNOTATION = "mtls.dev/certificate"
CERTIFICATE_UID_ANNOTATION = "mtls.dev/certificate-uid"
SPEC_HASH_ANNOTATION = "mtls.dev/spec-hash"
CA_FINGERPRINT_ANNOTATION = "mtls.dev/ca-fingerprint"
SERIAL_ANNOTATION = "mtls.dev/serial"
NOT_AFTER_ANNOTATION = "mtls.dev/not-after"
ISSUED_AT_ANNOTATION = "mtls.dev/issued-at"
REVISION_ANNOTATION = "mtls.dev/revision"
# The certificate's renew-requested-at value that this issuance honoured.
RENEWAL_REQUEST_ANNOTATION = "mtls.dev/renewal-request-honoured"
# Keys of labels/annotations that came from secretTemplate, so that keys
# dropped from the template are removed and nobody else's are.
TEMPLATE_LABELS_ANNOTATION = "mtls.dev/template-labels"
TEMPLATE_ANNOTATIONS_ANNOTATION = "mtls.dev/template-annotations"
# Which password the keystores are encrypted with, as a digest salted with
# the certificate's serial: a changed password Secret re-encrypts them. (It
# tells nothing the Secret does not: the same Secret holds the plain key.)
KEYSTORE_PASSWORD_ANNOTATION = "mtls.dev/keystore-password-digest"


@dataclass(frozen=True, slots=True)
class LeafFacts:
    serial_number: str
    fingerprint_sha256: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    issuer: str
    authority_key_id: bytes | None


@dataclass(frozen=True, slots=True)
class SecretFacts:
    """A managed Secret as the decision sees it. Holds no key material."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owner_references: tuple[Mapping[str, Any], ...]
    data_keys: frozenset[str]
    secret_type: str
    # Why tls.crt, tls.key or ca.crt is missing or unreadable; None when all
    # three are there and parse (whether the key belongs to the certificate
    # is `key_matches`).
    problem: str | None
    key_matches: bool
    leaf: LeafFacts | None
    trust_bundle_sha256: str | None

    @property
    def owner_uids(self) -> frozenset[str]:
        return frozenset(str(ref.get("uid", "")) for ref in self.owner_references)

    @property
    def managed(self) -> bool:
        return self.labels.get(MANAGED_BY_LABEL) == MANAGER

    @property
    def revision(self) -> int:
        try:
            return int(self.annotations.get(REVISION_ANNOTATION, "0"))
        except ValueError:
            return 0

    @property
    def issued_at(self) -> datetime.datetime | None:
        return parse_timestamp(self.annotations.get(ISSUED_AT_ANNOTATION))

    def template_keys(self, annotation: str) -> frozenset[str]:
        text = self.annotations.get(annotation, "")
        return frozenset(k for k in text.split(",") if k)


@dataclass(frozen=True)
class KnownKeyPair:
    """A key pair the operator has just written, with the facts of its
    certificate, so reading it back needs no parsing."""

    certificate_pem: bytes
    key_pem: bytes
    leaf: LeafFacts


def read_secret(body: Mapping[str, Any], known: KnownKeyPair | None = None) -> SecretFacts:
    """Facts of a Secret object as the API returns it."""
    metadata = body.get("metadata") or {}
    data = decode_data(body.get("data"))
    problem: str | None
    leaf: LeafFacts | None
    if (
        known is not None
        and data.get(TLS_CRT) == known.certificate_pem
        and data.get(TLS_KEY) == known.key_pem
        and data.get(CA_CRT)
    ):
        problem, leaf, key_matches = None, known.leaf, True
    else:
        problem, leaf, key_matches = _examine_key_pair(data)
    bundle = data.get(CA_CRT)
    return SecretFacts(
        namespace=kept(metadata.get("namespace", "")),
        name=metadata.get("name", ""),
        uid=metadata.get("uid", ""),
        resource_version=metadata.get("resourceVersion", ""),
        labels=kept_mapping(metadata.get("labels")),
        annotations=kept_mapping(metadata.get("annotations")),
        owner_references=tuple(kept_mapping(ref) for ref in metadata.get("ownerReferences") or []),
        data_keys=_data_keys(data),
        secret_type=body.get("type", ""),
        problem=problem,
        key_matches=key_matches,
        leaf=leaf,
        trust_bundle_sha256=kept(hashlib.sha256(bundle).hexdigest()) if bundle else None,
    )


# The sets of data keys made only of those the operator writes, one of each:
# there are few (one per choice of output formats), and every Secret has one.
_SHARED_DATA_KEYS: dict[frozenset[str], frozenset[str]] = {}


def _data_keys(data: Mapping[str, bytes]) -> frozenset[str]:
    keys = frozenset(data)
    if keys <= MANAGED_DATA_KEYS:
        return _SHARED_DATA_KEYS.setdefault(keys, keys)
    return keys


def _examine_key_pair(data: Mapping[str, bytes]) -> tuple[str | None, LeafFacts | None, bool]:
    certificate_pem, key_pem = data.get(TLS_CRT), data.get(TLS_KEY)
    if not certificate_pem:
        return f"{TLS_CRT} is missing or empty", None, False
    if not key_pem:
        return f"{TLS_KEY} is missing or empty", None, False
    if not data.get(CA_CRT):
        return f"{CA_CRT} is missing or empty", None, False
    try:
        leaf = load_certificates(certificate_pem)[0]
    except CertificateLoadError as err:
        return f"{TLS_CRT} is not a certificate: {err}", None, False
    try:
        # Read on the event loop for every Secret event: only the public half
        # is compared, so the slow RSA consistency check is skipped.
        key = load_private_key(key_pem, check_rsa=False)
    except KeyLoadError as err:
        return f"{TLS_KEY} is unusable: {err}", leaf_facts(leaf), False
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return None, leaf_facts(leaf), spki == key_spki


def leaf_facts(leaf: x509.Certificate) -> LeafFacts:
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        key_id = aki.key_identifier
    except x509.ExtensionNotFound:
        key_id = None
    return issued_leaf_facts(leaf, leaf.issuer.rfc4514_string(), key_id)


def issued_leaf_facts(
    leaf: x509.Certificate, issuer: str, authority_key_id: bytes | None
) -> LeafFacts:
    """Facts of a certificate whose issuer and AKI are already known (one
    just signed), without parsing its extensions again."""
    return LeafFacts(
        serial_number=serial_hex(leaf),
        fingerprint_sha256=fingerprint_sha256(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer=issuer,
        authority_key_id=authority_key_id,
    )


# --- Writing: the Secret as it should be. ---


def issuance_record(
    spec: CertificateSpec,
    issued: IssuedCertificate,
    ca: CertificateAuthority,
    *,
    issued_at: datetime.datetime,
    revision: int,
    renewal_request: str | None = None,
) -> dict[str, str]:
    """Annotations that record what was issued, so the Secret alone tells
    whether it still matches the spec and the CA."""
    record = {
        SPEC_HASH_ANNOTATION: spec.issuance_hash(),
        CA_FINGERPRINT_ANNOTATION: ca.fingerprint,
        SERIAL_ANNOTATION: serial_hex(issued.certificate),
        NOT_AFTER_ANNOTATION: format_timestamp(issued.certificate.not_valid_after_utc),
        ISSUED_AT_ANNOTATION: format_timestamp(issued_at),
        REVISION_ANNOTATION: str(revision),
    }
    if renewal_request:
        record[RENEWAL_REQUEST_ANNOTATION] = renewal_request
    return record


def keystore_password_digest(serial: str, password: bytes) -> str:
    salted = b"mtls.dev/keystore-password\0" + serial.encode() + b"\0" + password
    return hashlib.sha256(salted).hexdigest()[:32]


def _labels(spec: CertificateSpec) -> dict[str, str]:
    return {**dict(spec.secret_labels), MANAGED_BY_LABEL: MANAGER}


def _annotations(owner: CertificateRef, spec: CertificateSpec) -> dict[str, str]:
    return {
        **dict(spec.secret_annotations),
        CERTIFICATE_ANNOTATION: owner.name,
        CERTIFICATE_UID_ANNOTATION: owner.uid,
        TEMPLATE_LABELS_ANNOTATION: ",".join(sorted(dict(spec.secret_labels))),
        TEMPLATE_ANNOTATIONS_ANNOTATION: ",".join(sorted(dict(spec.secret_annotations))),
    }


def new_secret(
    owner: CertificateRef,
    spec: CertificateSpec,
    data: Mapping[str, bytes],
    record: Mapping[str, str],
) -> dict[str, Any]:
    """The body to create the Secret with."""
    metadata: dict[str, Any] = {
        "name": spec.secret_name,
        "namespace": owner.namespace,
        "labels": _labels(spec),
        "annotations": {**_annotations(owner, spec), **record},
    }
    if not spec.retain_secret:
        metadata["ownerReferences"] = [owner.owner_reference()]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": SECRET_TYPE,
        "data": encode_data(data),
    }


def secret_patch(
    existing: SecretFacts,
    owner: CertificateRef,
    spec: CertificateSpec,
    *,
    data: Mapping[str, bytes],
    record: Mapping[str, str] | None,
) -> dict[str, Any]:
    """A JSON merge patch that brings `existing` to what it should be while
    keeping what others added (foreign labels, annotations, owners). It
    carries the resourceVersion it was computed from, so a concurrent change
    makes it fail instead of being overwritten."""
    labels: dict[str, str | None] = dict(_labels(spec))
    for key in existing.template_keys(TEMPLATE_LABELS_ANNOTATION) - labels.keys():
        labels[key] = None
    annotations: dict[str, str | None] = {**_annotations(owner, spec), **(record or {})}
    for key in existing.template_keys(TEMPLATE_ANNOTATIONS_ANNOTATION) - annotations.keys():
        annotations[key] = None
    owners = [
        dict(ref)
        for ref in existing.owner_references
        if not (ref.get("apiVersion") == API_VERSION and ref.get("kind") == KIND)
    ]
    if not spec.retain_secret:
        owners.append(owner.owner_reference())
    encoded: dict[str, str | None] = dict(encode_data(data))
    for key in (existing.data_keys & MANAGED_DATA_KEYS) - spec.data_keys - data.keys():
        encoded[key] = None
    return {
        "metadata": {
            "resourceVersion": existing.resource_version,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": owners,
        },
        "data": encoded,
    }
