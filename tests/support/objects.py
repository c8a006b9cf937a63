"""Kubernetes-shaped inputs for the operator's pure core: a certificate spec,
a reference to the MtlsCertificate, and the Secret the operator would have
written for it, built with the operator's own issuance and layout code."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from mtls_operator.api.managed_secret import (
    SecretFacts,
    issuance_record,
    new_secret,
    read_secret,
)
from mtls_operator.api.pod_certificates import PodCertificateRequest, read_request
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.secret_data import decode_data, encode_data
from mtls_operator.api.spec import CertificateSpec, parse_spec
from mtls_operator.certificates.content import issue_secret_content
from mtls_operator.pki import CertificateAuthority

from support.clock import NOW

MIN_DURATION = datetime.timedelta(hours=1)
NAMESPACE = "shop"
SECRET_NAME = "payments-tls"
CERTIFICATE = CertificateRef(NAMESPACE, "payments", "uid-payments")
SECRET_UID = "uid-secret"

BASE_SPEC: Mapping[str, Any] = {
    "secretName": SECRET_NAME,
    "usage": "server",
    "commonName": "payments.shop.svc",
    "dnsNames": ["payments", "payments.shop.svc"],
}


def spec_dict(**fields: Any) -> dict[str, Any]:
    """A valid `.spec` with `fields` merged in; a field given as None is left out."""
    merged = {**copy.deepcopy(dict(BASE_SPEC)), **fields}
    return {key: value for key, value in merged.items() if value is not None}


def certificate_body(
    name: str, *, created: str = "2026-11-28T11:00:00Z", **fields: Any
) -> dict[str, Any]:
    """MtlsCertificate `name` of NAMESPACE as its watch delivers it, with
    `spec_dict(**fields)` as its spec."""
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {
            "namespace": NAMESPACE,
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": created,
        },
        "spec": spec_dict(**fields),
    }


def certificate_spec(**fields: Any) -> CertificateSpec:
    return parse_spec(spec_dict(**fields), MIN_DURATION)


def secret_body(
    spec: CertificateSpec,
    ca: CertificateAuthority,
    *,
    owner: CertificateRef = CERTIFICATE,
    now: datetime.datetime = NOW,
    revision: int = 1,
    previous_key_pem: bytes | None = None,
    pkcs12_password: bytes | None = None,
    uid: str = SECRET_UID,
    resource_version: str = "100",
    renewal_request: str | None = None,
) -> dict[str, Any]:
    """The Secret as the API would return it after the operator created it."""
    content = issue_secret_content(
        spec, ca, now, previous_key_pem=previous_key_pem, pkcs12_password=pkcs12_password
    )
    record = issuance_record(
        spec,
        content.issued,
        ca,
        issued_at=now,
        revision=revision,
        renewal_request=renewal_request,
    )
    body = new_secret(owner, spec, content.data, record)
    body["metadata"]["uid"] = uid
    body["metadata"]["resourceVersion"] = resource_version
    return body


def secret_data(body: Mapping[str, Any]) -> dict[str, bytes]:
    return decode_data(body.get("data"))


def with_data(body: Mapping[str, Any], changes: Mapping[str, bytes | None]) -> dict[str, Any]:
    """A copy of `body` with data keys replaced; None removes a key."""
    data: dict[str, bytes] = secret_data(body)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    changed = copy.deepcopy(dict(body))
    changed["data"] = encode_data(data)
    return changed


def with_metadata(
    body: Mapping[str, Any],
    *,
    labels: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str | None] | None = None,
    owner_references: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of `body` with labels/annotations changed (None removes a key)
    and, when given, the owner references replaced."""
    changed = copy.deepcopy(dict(body))
    metadata = changed["metadata"]
    for field, changes in (("labels", labels), ("annotations", annotations)):
        current = dict(metadata.get(field) or {})
        for key, value in (changes or {}).items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        metadata[field] = current
    if owner_references is not None:
        metadata["ownerReferences"] = [dict(ref) for ref in owner_references]
        if not owner_references:
            del metadata["ownerReferences"]
    return changed


def secret_facts(spec: CertificateSpec, ca: CertificateAuthority, **options: Any) -> SecretFacts:
    return read_secret(secret_body(spec, ca, **options))


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def pod_certificate_request(**spec: Any) -> PodCertificateRequest:
    """A request of pod shop/app (service account payments, node node-1) as
    the signer reads it; `spec` overrides its fields."""
    return read_request(
        {
            "metadata": {"namespace": "shop", "name": "req-1", "uid": "uid-req"},
            "spec": {
                "signerName": "mtls.dev/pod-identity",
                "podName": "app",
                "podUID": "uid-pod",
                "serviceAccountName": "payments",
                "serviceAccountUID": "uid-sa",
                "nodeName": "node-1",
                "nodeUID": "uid-node",
                "maxExpirationSeconds": 86400,
                **spec,
            },
        }
    )
