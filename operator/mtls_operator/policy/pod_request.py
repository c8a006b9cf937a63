"""The decision for one PodCertificateRequest: deny, fail, or sign, and what.

The kubelet asks on behalf of a pod; the API server's NodeRestriction
checks the node, but a signer must not trust that it runs: every claim of
the request (pod, node, service account, with their UIDs) is checked against
the objects themselves, and the identity signed is the pod's service
account's, under the same identity policy as MtlsCertificates.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mtls_operator.api.pod_certificates import (
    DENIED,
    FAILED,
    MIN_LIFETIME,
    POD_CLOCK_SKEW_BACKDATE,
    REFRESH_MARGIN,
    PodCertificateRequest,
)
from mtls_operator.pki import (
    CertificateAuthority,
    DistinguishedName,
    LeafRequest,
    PublicKey,
    SubjectAltNames,
    Usage,
)
from mtls_operator.pki.names import parse_dns_name
from mtls_operator.policy.identity import IdentityRules, identity_violation
from mtls_operator.policy.renewal import renewal_time
from mtls_operator.policy.violation import Violation

# The user annotation a pod author may set (in the podCertificate volume's
# userAnnotations) to ask for DNS names besides the SPIFFE ID; each must be
# one the identity policy allows the namespace.
DNS_NAMES_ANNOTATION = "mtls.dev/dns-names"
KNOWN_ANNOTATIONS = frozenset({DNS_NAMES_ANNOTATION})

# Reasons (the API recommends UnsupportedKeyType and InvalidUnverifiedUserAnnotations).
POD_NOT_FOUND = "PodNotFound"
POD_UID_MISMATCH = "PodUIDMismatch"
NODE_MISMATCH = "NodeMismatch"
NODE_NOT_FOUND = "NodeNotFound"
NODE_UID_MISMATCH = "NodeUIDMismatch"
SERVICE_ACCOUNT_MISMATCH = "ServiceAccountMismatch"
SERVICE_ACCOUNT_NOT_FOUND = "ServiceAccountNotFound"
SERVICE_ACCOUNT_UID_MISMATCH = "ServiceAccountUIDMismatch"
NO_CERTIFICATE_VOLUME = "PodCertificateVolumeNotFound"
UNSUPPORTED_KEY_TYPE = "UnsupportedKeyType"
INVALID_ANNOTATIONS = "InvalidUnverifiedUserAnnotations"
POLICY_DENIED = "PolicyDenied"
CA_EXPIRES_TOO_SOON = "CAExpiresTooSoon"


# The userAnnotations of one podCertificate volume source, sorted.
Annotations = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class PodFacts:
    uid: str
    node_name: str
    service_account_name: str
    # (signerName, userAnnotations) of each podCertificate volume source of
    # the pod. Not a claim of the request (so not compared with one): the
    # request's annotations are judged against it.
    certificate_volumes: tuple[tuple[str, Annotations], ...] = field(default=(), compare=False)

    def declared_annotations(self, signer_name: str) -> list[Annotations]:
        return [found for signer, found in self.certificate_volumes if signer == signer_name]


@dataclass(frozen=True)
class Input:
    request: PodCertificateRequest
    pod: PodFacts | None
    node_uid: str | None  # None: the node does not exist
    service_account_uid: str | None  # None: the service account does not exist
    public_key: PublicKey | None  # None: not a key type this signer signs
    ca: CertificateAuthority
    trust_domain: str
    # What the namespace may hold; None when the identity policy is open.
    identity: IdentityRules | None
    max_duration: datetime.timedelta
    now: datetime.datetime


@dataclass(frozen=True)
class Refuse:
    outcome: str  # Denied or Failed
    violation: Violation


@dataclass(frozen=True)
class Sign:
    request: LeafRequest
    public_key: PublicKey
    now: datetime.datetime  # whole seconds: the API compares the leaf's times to the status
    not_before: datetime.datetime
    not_after: datetime.datetime
    begin_refresh_at: datetime.datetime


Decision = Refuse | Sign
Check = Callable[[Input], Violation | None]


def _deny(reason: str, message: str) -> Violation:
    return Violation(reason, message)


def _same_object(
    what: str, uid: str | None, claimed_uid: str, not_found: str, uid_mismatch: str
) -> Violation | None:
    """`what` the request names exists (`uid` is not None) and is the very
    object it claims: one deleted and created again under the same name has
    another UID."""
    if uid is None:
        return _deny(not_found, f"{what} does not exist")
    if uid != claimed_uid:
        return _deny(uid_mismatch, f"{what} has UID {uid}, not {claimed_uid}")
    return None


def pod_exists(given: Input) -> Violation | None:
    request = given.request
    uid = given.pod.uid if given.pod is not None else None
    pod = f"pod {request.namespace}/{request.pod_name}"
    return _same_object(pod, uid, request.pod_uid, POD_NOT_FOUND, POD_UID_MISMATCH)


def pod_on_node(given: Input) -> Violation | None:
    request, pod = given.request, given.pod
    if pod is None or pod.node_name == request.node_name:
        return None
    where = pod.node_name or "no node"
    return _deny(NODE_MISMATCH, f"pod {request.pod_name} runs on {where}, not {request.node_name}")


def node_exists(given: Input) -> Violation | None:
    request = given.request
    node = f"node {request.node_name}"
    return _same_object(node, given.node_uid, request.node_uid, NODE_NOT_FOUND, NODE_UID_MISMATCH)


def pod_runs_as(given: Input) -> Violation | None:
    request, pod = given.request, given.pod
    if pod is None or pod.service_account_name == request.service_account_name:
        return None
    return _deny(
        SERVICE_ACCOUNT_MISMATCH,
        f"pod {request.pod_name} runs as service account {pod.service_account_name}, "
        f"not {request.service_account_name}",
    )


def service_account_exists(given: Input) -> Violation | None:
    request = given.request
    account = f"service account {request.namespace}/{request.service_account_name}"
    return _same_object(
        account,
        given.service_account_uid,
        request.service_account_uid,
        SERVICE_ACCOUNT_NOT_FOUND,
        SERVICE_ACCOUNT_UID_MISMATCH,
    )


def annotations_declared(given: Input) -> Violation | None:
    """The request's annotations are the ones the pod's own podCertificate
    volume declares: the kubelet copies them verbatim, and nothing else (the
    API server checks the node, not the annotations) stops a node from
    asking, for any pod it runs, for any name its namespace may hold."""
    request, pod = given.request, given.pod
    if pod is None:
        return None
    declared = pod.declared_annotations(request.signer_name)
    where = f"pod {request.namespace}/{request.pod_name}"
    if not declared:
        return _deny(
            NO_CERTIFICATE_VOLUME,
            f"{where} mounts no podCertificate volume of signer {request.signer_name}",
        )
    asked = tuple(sorted(request.user_annotations.items()))
    if asked in declared:
        return None
    return _deny(
        INVALID_ANNOTATIONS,
        f"the user annotations {json.dumps(dict(asked))} are not those the podCertificate "
        f"volume of {where} declares ({' or '.join(json.dumps(dict(d)) for d in declared)})",
    )


def annotations_known(given: Input) -> Violation | None:
    unknown = sorted(set(given.request.user_annotations) - KNOWN_ANNOTATIONS)
    if unknown:
        return _deny(
            INVALID_ANNOTATIONS,
            f"unknown user annotation {unknown[0]!r} (this signer reads only "
            f"{', '.join(sorted(KNOWN_ANNOTATIONS))})",
        )
    try:
        requested_dns_names(given.request.user_annotations)
    except ValueError as err:
        return _deny(INVALID_ANNOTATIONS, f"{DNS_NAMES_ANNOTATION}: {err}")
    return None


def identity_allowed(given: Input) -> Violation | None:
    if given.identity is None:
        return None
    return identity_violation(leaf_request(given), given.identity)


CHECKS: tuple[Check, ...] = (
    pod_exists,
    pod_on_node,
    node_exists,
    pod_runs_as,
    service_account_exists,
    annotations_declared,
    annotations_known,
    identity_allowed,
)


def requested_dns_names(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The DNS names of the `mtls.dev/dns-names` annotation (comma-separated,
    white space around a name ignored). Raises ValueError naming the bad name."""
    text = annotations.get(DNS_NAMES_ANNOTATION, "")
    names = [part.strip() for part in text.split(",") if part.strip()]
    return tuple(dict.fromkeys(_dns_name(name) for name in names))


def _dns_name(text: str) -> str:
    try:
        return parse_dns_name(text)
    except ValueError as err:
        raise ValueError(f"{json.dumps(text)}: {err}") from None


def spiffe_id(given: Input) -> str:
    request = given.request
    return f"spiffe://{given.trust_domain}/ns/{request.namespace}/sa/{request.service_account_name}"


def lifetime(given: Input) -> datetime.timedelta:
    return min(given.request.max_expiration, given.max_duration)


def leaf_request(given: Input) -> LeafRequest:
    """The pod's identity: its SPIFFE ID, the DNS names it asked for, usable
    as client and server. (The lifetime is counted from the backdated
    notBefore, so that notAfter - notBefore is exactly the lifetime.)"""
    names = SubjectAltNames(
        dns_names=requested_dns_names(given.request.user_annotations), uris=(spiffe_id(given),)
    )
    return LeafRequest(
        Usage.BOTH, DistinguishedName(), names, lifetime(given) - POD_CLOCK_SKEW_BACKDATE
    )


def decide(given: Input) -> Decision:
    for check in CHECKS:
        violation = check(given)
        if violation is not None:
            return Refuse(DENIED, violation)
    public_key = given.public_key
    if public_key is None:
        return Refuse(
            DENIED,
            _deny(
                UNSUPPORTED_KEY_TYPE,
                "the stub PKCS#10 request holds no key this signer signs "
                "(ECDSAP256, ECDSAP384, ECDSAP521, ED25519, RSA3072, RSA4096)",
            ),
        )
    now = given.now.replace(microsecond=0)
    not_before = now - POD_CLOCK_SKEW_BACKDATE
    not_after = min(not_before + lifetime(given), given.ca.not_after)
    if not_after - not_before < MIN_LIFETIME:
        return Refuse(
            FAILED,
            Violation(
                CA_EXPIRES_TOO_SOON,
                f"the CA {given.ca.subject!r} expires at {given.ca.not_after.isoformat()}, "
                "too soon for a certificate of an hour: rotate it",
            ),
        )
    return Sign(
        request=leaf_request(given),
        public_key=public_key,
        now=now,
        not_before=not_before,
        not_after=not_after,
        begin_refresh_at=begin_refresh_at(given.request.uid, not_before, not_after),
    )


def begin_refresh_at(
    uid: str, not_before: datetime.datetime, not_after: datetime.datetime
) -> datetime.datetime:
    """About two thirds into the lifetime, minus the same deterministic
    jitter as certificates, in whole seconds and at least ten minutes from
    either end (the API server's rule)."""
    refresh = renewal_time((not_after - not_before) / 3, not_after, uid).replace(microsecond=0)
    return max(not_before + REFRESH_MARGIN, min(refresh, not_after - REFRESH_MARGIN))
