"""The decision: does a certificate need (re-)issuance, repair, or nothing?

One frozen input goes through ordered chains of small pure checks; each
returns None or a Violation, and the first violation wins. Time is part of
the input, never read inside a check.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from mtls_operator.pki import CertificateAuthority
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE
from mtls_operator.resources import CertificateRef
from mtls_operator.secrets import (
    CA_CRT,
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    COMBINED_PEM,
    KEY_DER,
    KEYSTORE_P12,
    MANAGED_BY_LABEL,
    MANAGED_DATA_KEYS,
    RENEWAL_REQUEST_ANNOTATION,
    SECRET_TYPE,
    SPEC_HASH_ANNOTATION,
    TEMPLATE_ANNOTATIONS_ANNOTATION,
    TEMPLATE_LABELS_ANNOTATION,
    TLS_CRT,
    TLS_KEY,
    TRUSTSTORE_P12,
    SecretFacts,
)
from mtls_operator.spec import CertificateSpec, OutputFormat

# Why a certificate is issued, in the order they are checked.
SECRET_MISSING = "SecretMissing"
SECRET_INVALID = "SecretInvalid"
KEY_MISMATCH = "KeyMismatch"
ISSUER_CHANGED = "IssuerChanged"
SPEC_CHANGED = "SpecChanged"
EXPIRED = "Expired"
RENEWAL_DUE = "RenewalDue"
MANUAL_RENEWAL = "ManualRenewal"
RENEWAL_TRIGGERS = frozenset({EXPIRED, RENEWAL_DUE, MANUAL_RENEWAL})

# Why a certificate cannot be issued (Ready=False reasons).
INVALID_SPEC = "InvalidSpec"
CA_NOT_FOUND = "CANotFound"
CA_INVALID = "CAInvalid"
SECRET_CONFLICT = "SecretConflict"
ISSUANCE_FAILED = "IssuanceFailed"

# Drift that is repaired without issuing.
TRUST_BUNDLE_DRIFT = "TrustBundle"
TEMPLATE_DRIFT = "SecretTemplate"
OWNER_REFERENCE_DRIFT = "OwnerReference"
OUTPUTS_DRIFT = "OutputFormats"

# Jitter spreads renewals of certificates created together: a fraction of
# renewBefore derived from the uid, so it is the same after every restart.
MAX_JITTER_FRACTION = 0.1
MAX_JITTER = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Violation:
    reason: str
    message: str


@dataclass(frozen=True)
class Input:
    certificate: CertificateRef
    spec: CertificateSpec
    secret: SecretFacts | None
    ca: CertificateAuthority
    now: datetime.datetime
    # An older certificate in the namespace that names the same Secret.
    older_claimant: str | None = None


Check = Callable[[Input], Violation | None]


def renewal_time(
    spec: CertificateSpec,
    issued_at: datetime.datetime,
    not_after: datetime.datetime,
    uid: str,
    ca_not_after: datetime.datetime | None = None,
) -> datetime.datetime:
    """notAfter - renewBefore - jitter, where renewBefore defaults to a
    third of the lifetime actually granted.

    A certificate cut to its CA's own expiry is not renewed: the new one
    would be cut again, shorter each time, re-issuing everything ever more
    often. It waits for the CA to be rotated (IssuerChanged) or extended."""
    if ca_not_after is not None and not_after >= ca_not_after:
        return not_after
    renew_before = spec.renew_before_for(not_after - issued_at)
    return not_after - renew_before - jitter(uid, renew_before)


def jitter(uid: str, renew_before: datetime.timedelta) -> datetime.timedelta:
    fraction = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") / 2**64
    return min(renew_before * MAX_JITTER_FRACTION, MAX_JITTER) * fraction


def issued_at(secret: SecretFacts) -> datetime.datetime | None:
    """When the Secret's certificate was issued: recorded by the operator,
    else derived from the backdated notBefore."""
    if secret.issued_at is not None:
        return secret.issued_at
    return secret.leaf.not_before + CLOCK_SKEW_BACKDATE if secret.leaf else None


# --- Blocking checks: issuance is impossible until the user acts. ---


def older_claimant(given: Input) -> Violation | None:
    if given.older_claimant is None:
        return None
    return Violation(
        SECRET_CONFLICT,
        f"Secret {given.spec.secret_name} is also named by the older certificate "
        f"{given.older_claimant}, which owns it",
    )


def unmanaged_secret(given: Input) -> Violation | None:
    if given.secret is None or given.secret.managed:
        return None
    return Violation(
        SECRET_CONFLICT,
        f"Secret {given.spec.secret_name} exists and is not managed by mtls-operator; "
        "it is left untouched (delete it or choose another secretName)",
    )


def wrong_secret_type(given: Input) -> Violation | None:
    """The type of a Secret cannot change; one of another type cannot hold
    a certificate the way pods expect."""
    if given.secret is None or given.secret.secret_type in (SECRET_TYPE, ""):
        return None
    return Violation(
        SECRET_CONFLICT,
        f"Secret {given.spec.secret_name} has type {given.secret.secret_type}, not {SECRET_TYPE}; "
        "delete it and it is created again with the right type",
    )


def ca_expired(given: Input) -> Violation | None:
    if given.now <= given.ca.not_after:
        return None
    return Violation(
        CA_INVALID, f"the CA {given.ca.subject!r} expired at {given.ca.not_after.isoformat()}"
    )


BLOCKING_CHECKS: tuple[Check, ...] = (
    older_claimant,
    unmanaged_secret,
    wrong_secret_type,
    ca_expired,
)


# --- Issuance triggers, in the order of the specification. ---


def secret_missing(given: Input) -> Violation | None:
    if given.secret is not None:
        return None
    return Violation(SECRET_MISSING, f"Secret {given.spec.secret_name} does not exist")


def secret_invalid(given: Input) -> Violation | None:
    if given.secret is None or given.secret.problem is None:
        return None
    return Violation(SECRET_INVALID, f"Secret {given.spec.secret_name}: {given.secret.problem}")


def key_mismatch(given: Input) -> Violation | None:
    if given.secret is None or given.secret.key_matches:
        return None
    return Violation(KEY_MISMATCH, f"{TLS_KEY} does not belong to the certificate in {TLS_CRT}")


def issuer_changed(given: Input) -> Violation | None:
    leaf = given.secret.leaf if given.secret else None
    if leaf is None:
        return None
    same_issuer = leaf.issuer == given.ca.subject
    same_key = leaf.authority_key_id in (None, given.ca.key_identifier)
    if same_issuer and same_key:
        return None
    return Violation(
        ISSUER_CHANGED, f"the certificate was not issued by the current CA {given.ca.subject!r}"
    )


def spec_changed(given: Input) -> Violation | None:
    if given.secret is None:
        return None
    if given.secret.annotations.get(SPEC_HASH_ANNOTATION) == given.spec.issuance_hash():
        return None
    return Violation(SPEC_CHANGED, "the certificate no longer matches the spec")


def expired(given: Input) -> Violation | None:
    leaf = given.secret.leaf if given.secret else None
    if leaf is None or given.now < leaf.not_after:
        return None
    return Violation(EXPIRED, f"the certificate expired at {leaf.not_after.isoformat()}")


def renewal_due(given: Input) -> Violation | None:
    due = renewal_time_of(given)
    if due is None or given.now < due:
        return None
    return Violation(RENEWAL_DUE, f"renewal was due at {due.isoformat()}")


def manual_renewal(given: Input) -> Violation | None:
    """A renew-requested-at value that no issuance has honoured yet. Each
    issuance records the value it saw, so one request means exactly one
    re-issuance, whatever the clocks of the client and the operator say."""
    requested = given.certificate.renewal_request
    if requested is None or given.secret is None:
        return None
    if given.secret.annotations.get(RENEWAL_REQUEST_ANNOTATION) == requested:
        return None
    return Violation(MANUAL_RENEWAL, f"renewal was requested at {requested}")


ISSUANCE_CHECKS: tuple[Check, ...] = (
    secret_missing,
    secret_invalid,
    key_mismatch,
    issuer_changed,
    spec_changed,
    expired,
    renewal_due,
    manual_renewal,
)


def renewal_time_of(given: Input) -> datetime.datetime | None:
    if given.secret is None or given.secret.leaf is None:
        return None
    start = issued_at(given.secret)
    if start is None:
        return None
    return renewal_time(
        given.spec, start, given.secret.leaf.not_after, given.certificate.uid, given.ca.not_after
    )


def first_violation(checks: tuple[Check, ...], given: Input) -> Violation | None:
    for check in checks:
        violation = check(given)
        if violation is not None:
            return violation
    return None


# --- Drift: the certificate is fine, the Secret around it is not. ---


def expected_data_keys(spec: CertificateSpec) -> frozenset[str]:
    keys = {TLS_CRT, TLS_KEY, CA_CRT}
    if OutputFormat.COMBINED_PEM in spec.output_formats:
        keys.add(COMBINED_PEM)
    if OutputFormat.DER in spec.output_formats:
        keys.add(KEY_DER)
    if spec.pkcs12_password is not None:
        keys |= {KEYSTORE_P12, TRUSTSTORE_P12}
    return frozenset(keys)


def drift(given: Input) -> tuple[str, ...]:
    """What to repair in an otherwise valid Secret, in a fixed order."""
    secret = given.secret
    if secret is None:
        return ()
    found = []
    if secret.trust_bundle_sha256 != given.ca.trust_bundle_sha256:
        found.append(TRUST_BUNDLE_DRIFT)
    if _metadata_drifted(given.certificate, given.spec, secret):
        found.append(TEMPLATE_DRIFT)
    owned = given.certificate.uid in secret.owner_uids
    if owned == given.spec.retain_secret:
        found.append(OWNER_REFERENCE_DRIFT)
    if secret.data_keys & MANAGED_DATA_KEYS != expected_data_keys(given.spec):
        found.append(OUTPUTS_DRIFT)
    return tuple(found)


def _metadata_drifted(
    certificate: CertificateRef, spec: CertificateSpec, secret: SecretFacts
) -> bool:
    """Labels and annotations: ours, and those of secretTemplate (including
    removing template keys the template no longer has)."""
    if secret.labels.get(MANAGED_BY_LABEL) is None:
        return True
    if secret.annotations.get(CERTIFICATE_ANNOTATION) != certificate.name:
        return True  # e.g. a retained Secret taken over by a new certificate
    if secret.annotations.get(CERTIFICATE_UID_ANNOTATION) != certificate.uid:
        return True
    for wanted, actual, record in (
        (dict(spec.secret_labels), secret.labels, TEMPLATE_LABELS_ANNOTATION),
        (dict(spec.secret_annotations), secret.annotations, TEMPLATE_ANNOTATIONS_ANNOTATION),
    ):
        if any(actual.get(k) != v for k, v in wanted.items()):
            return True
        if secret.template_keys(record) != frozenset(wanted):
            return True  # keys to remove, or to record
    return False


# --- The decision. ---


@dataclass(frozen=True)
class Blocked:
    violation: Violation


@dataclass(frozen=True)
class Issue:
    trigger: Violation


@dataclass(frozen=True)
class Repair:
    secret: SecretFacts
    items: tuple[str, ...]


@dataclass(frozen=True)
class UpToDate:
    secret: SecretFacts


Decision = Blocked | Issue | Repair | UpToDate


def decide(given: Input) -> Decision:
    blocker = first_violation(BLOCKING_CHECKS, given)
    if blocker is not None:
        return Blocked(blocker)
    trigger = first_violation(ISSUANCE_CHECKS, given)
    if trigger is not None:
        return Issue(trigger)
    # Past the triggers, the Secret exists and holds a valid key pair.
    secret = given.secret
    if secret is None:
        return Issue(Violation(SECRET_MISSING, f"Secret {given.spec.secret_name} does not exist"))
    items = drift(given)
    return Repair(secret, items) if items else UpToDate(secret)
