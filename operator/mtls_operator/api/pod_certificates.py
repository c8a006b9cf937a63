"""Kubernetes' own certificate APIs as this operator uses them:
PodCertificateRequest (certificates.k8s.io/v1), which it signs, and
ClusterTrustBundle, which it publishes its roots in.

The rules a signer must follow come from the API server's validation of
PodCertificateRequest status (v1.37): one status update sets the chain,
notBefore and notAfter equal to the leaf's (whole seconds, notBefore within
five minutes of the server's clock), beginRefreshAt at least ten minutes
inside both, a lifetime of at least an hour and at most
spec.maxExpirationSeconds, and exactly one condition: Issued, Denied or
Failed, with a reason and a lastTransitionTime.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.paths import resource_path
from mtls_operator.api.timestamps import format_timestamp

CERTIFICATES_API_VERSION = "certificates.k8s.io/v1"
ISSUED, DENIED, FAILED = "Issued", "Denied", "Failed"
TERMINAL_CONDITIONS = frozenset({ISSUED, DENIED, FAILED})
# What the API server defaults spec.maxExpirationSeconds to.
DEFAULT_MAX_EXPIRATION = datetime.timedelta(seconds=86400)
MIN_LIFETIME = datetime.timedelta(hours=1)
# beginRefreshAt must stay this far from notBefore and notAfter.
REFRESH_MARGIN = datetime.timedelta(minutes=10)
# The server accepts a notBefore within five minutes of its clock: backdate
# by less, for relying parties whose clocks run a little behind.
POD_CLOCK_SKEW_BACKDATE = datetime.timedelta(minutes=1)


def pod_certificate_requests_path(
    namespace: str | None = None, name: str | None = None, subresource: str | None = None
) -> str:
    return resource_path(
        CERTIFICATES_API_VERSION, "podcertificaterequests", namespace, name, subresource
    )


def cluster_trust_bundles_path(name: str | None = None) -> str:
    return resource_path(CERTIFICATES_API_VERSION, "clustertrustbundles", None, name)


def trust_bundle_name(signer_name: str, suffix: str) -> str:
    """The API server requires a signer's bundle to be named after it, with
    ':' for '/', then ':' and a name of its own."""
    return f"{signer_name.replace('/', ':')}:{suffix}"


@dataclass(frozen=True)
class PodCertificateRequest:
    """A request as the signer sees it; holds a public key only."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    created: str
    signer_name: str
    pod_name: str
    pod_uid: str
    service_account_name: str
    service_account_uid: str
    node_name: str
    node_uid: str
    max_expiration: datetime.timedelta
    stub_pkcs10_request: bytes
    user_annotations: Mapping[str, str]
    # The terminal condition already set (Issued, Denied, Failed), if any.
    outcome: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def read_request(body: Mapping[str, Any]) -> PodCertificateRequest:
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    outcome = next(
        (
            str(c.get("type"))
            for c in conditions
            if c.get("type") in TERMINAL_CONDITIONS and c.get("status") == "True"
        ),
        None,
    )
    try:
        stub = base64.b64decode(spec.get("stubPKCS10Request") or "", validate=True)
    except ValueError:
        stub = b""
    seconds = spec.get("maxExpirationSeconds")
    return PodCertificateRequest(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        created=str(metadata.get("creationTimestamp", "")),
        signer_name=str(spec.get("signerName", "")),
        pod_name=str(spec.get("podName", "")),
        pod_uid=str(spec.get("podUID", "")),
        service_account_name=str(spec.get("serviceAccountName", "")),
        service_account_uid=str(spec.get("serviceAccountUID", "")),
        node_name=str(spec.get("nodeName", "")),
        node_uid=str(spec.get("nodeUID", "")),
        max_expiration=datetime.timedelta(seconds=int(seconds))
        if isinstance(seconds, int)
        else DEFAULT_MAX_EXPIRATION,
        stub_pkcs10_request=stub,
        user_annotations=dict(spec.get("unverifiedUserAnnotations") or {}),
        outcome=outcome,
    )


def _condition(kind: str, reason: str, message: str, now: datetime.datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": format_timestamp(now),
    }


def issued_status(
    chain_pem: bytes,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    begin_refresh_at: datetime.datetime,
    message: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    return {
        "conditions": [_condition(ISSUED, ISSUED, message, now)],
        "certificateChain": chain_pem.decode(),
        "notBefore": format_timestamp(not_before),
        "notAfter": format_timestamp(not_after),
        "beginRefreshAt": format_timestamp(begin_refresh_at),
    }


def refused_status(
    outcome: str, reason: str, message: str, now: datetime.datetime
) -> dict[str, Any]:
    """Denied (the request will never be signed) or Failed (it could not be)."""
    return {"conditions": [_condition(outcome, reason, message, now)]}
