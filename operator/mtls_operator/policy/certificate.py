"""The decision for one MtlsCertificate: blocked, (re-)issue, repair, or
nothing to do.

One frozen input goes through ordered chains of small pure checks; each
returns None or a Violation, and the first violation wins. Time is part of
the input, never read inside a check.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable
from dataclasses import dataclass

from mtls_operator.api.managed_secret import (
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    KEYSTORE_PASSWORD_ANNOTATION,
    MANAGED_BY_LABEL,
    SECRET_TYPE,
    SPEC_HASH_ANNOTATION,
    TEMPLATE_ANNOTATIONS_ANNOTATION,
    TEMPLATE_LABELS_ANNOTATION,
    LeafFacts,
    SecretFacts,
)
from mtls_operator.api.outputs import MANAGED_DATA_KEYS, TLS_CRT, TLS_KEY
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.revocations import RevocationRequestError, RevokeRequest
from mtls_operator.api.spec import CertificateSpec
from mtls_operator.api.status import Reason
from mtls_operator.pki import CertificateAuthority
from mtls_operator.policy import renewal
from mtls_operator.policy.identity import IdentityRules, identity_violation
from mtls_operator.policy.violation import Violation


class Trigger(enum.StrEnum):
    """Why a certificate is issued, in the order they are checked."""

    SECRET_MISSING = "SecretMissing"
    SECRET_INVALID = "SecretInvalid"
    KEY_MISMATCH = "KeyMismatch"
    ISSUER_CHANGED = "IssuerChanged"
    SPEC_CHANGED = "SpecChanged"
    EXPIRED = "Expired"
    RENEWAL_DUE = "RenewalDue"
    MANUAL_RENEWAL = "ManualRenewal"
    # The certificate the Secret holds is revoked: a new key, at once.
    REVOKED = "Revoked"


RENEWAL_TRIGGERS = frozenset({Trigger.EXPIRED, Trigger.RENEWAL_DUE, Trigger.MANUAL_RENEWAL})
# Issuances whose new certificate must not keep the old key, whatever
# rotationPolicy says: the key is what was stolen.
NEW_KEY_TRIGGERS = frozenset({Trigger.REVOKED})
# Re-issuances that may wait their turn: a CA swap or a wave of renewals
# must not rewrite thousands of Secrets in the same second. (An expired
# certificate never waits.)
RATE_LIMITED_TRIGGERS = frozenset({Trigger.ISSUER_CHANGED, Trigger.RENEWAL_DUE})


class Drift(enum.StrEnum):
    """What is repaired in a Secret whose certificate is fine."""

    TRUST_BUNDLE = "TrustBundle"
    SECRET_TEMPLATE = "SecretTemplate"
    OWNER_REFERENCE = "OwnerReference"
    OUTPUT_FORMATS = "OutputFormats"
    KEYSTORE_PASSWORD = "KeystorePassword"


# Drift whose repair rewrites data (and so needs the key and a worker thread).
DATA_DRIFT = frozenset({Drift.TRUST_BUNDLE, Drift.OUTPUT_FORMATS, Drift.KEYSTORE_PASSWORD})


@dataclass(frozen=True)
class Input:
    certificate: CertificateRef
    spec: CertificateSpec
    secret: SecretFacts | None
    ca: CertificateAuthority
    now: datetime.datetime
    # An older certificate in the namespace that names the same Secret.
    older_claimant: str | None = None
    # What the certificate may carry; None when it is not judged (the
    # namespace's own CA signs it, or the identity policy is open).
    identity: IdentityRules | None = None
    # The digest the keystores would record for the current password
    # (keystore_password_digest); None when there is none to compare.
    keystore_password: str | None = None
    # What the revoke-serial annotation asks, and whether the CA's
    # revocations record already holds that serial.
    revoke: RevokeRequest | RevocationRequestError | None = None
    revocation_recorded: bool = False


Check = Callable[[Input], Violation | None]


@dataclass(frozen=True)
class Revoke:
    """Record the revocation of the held certificate first; the next look
    re-issues it."""

    request: RevokeRequest
    leaf: LeafFacts


def held_revocation(given: Input) -> Revoke | None:
    """The revocation asked for, if it is of the certificate the Secret
    holds: the one serial a tenant may name, what was issued to it."""
    leaf = given.secret.leaf if given.secret is not None and given.secret.managed else None
    if not isinstance(given.revoke, RevokeRequest) or leaf is None:
        return None
    if int(leaf.serial_number, 16) != given.revoke.serial_number:
        return None
    return Revoke(given.revoke, leaf)


# --- Blocking checks: issuance is impossible until something changes. ---


def revoke_request_readable(given: Input) -> Violation | None:
    if not isinstance(given.revoke, RevocationRequestError):
        return None
    return Violation(Reason.INVALID_SPEC, str(given.revoke))


def identity_allowed(given: Input) -> Violation | None:
    """Every identity must be one the namespace may hold. A refused
    certificate is not renewed, and its Secret is left as it is."""
    if given.identity is None:
        return None
    violation = identity_violation(given.spec.request, given.identity)
    if violation is None:
        return None
    leaf = given.secret.leaf if given.secret is not None and given.secret.managed else None
    if leaf is None:
        return violation
    kept = (
        f"; Secret {given.spec.secret_name} is kept, and not renewed, until its certificate "
        f"expires at {leaf.not_after.isoformat()}"
    )
    return Violation(violation.reason, violation.message + kept)


def older_claimant(given: Input) -> Violation | None:
    """Names no owner: when the owner goes, only the next one is looked at
    again (thousands may claim one Secret), and the others' status must
    stay true."""
    if given.older_claimant is None:
        return None
    return Violation(
        Reason.SECRET_CONFLICT,
        f"Secret {given.spec.secret_name} is also named by an older certificate, which owns it",
    )


def unmanaged_secret(given: Input) -> Violation | None:
    if given.secret is None or given.secret.managed:
        return None
    # A foreign Secret is not watched: look again later whether it is gone.
    return Violation(
        Reason.SECRET_CONFLICT,
        f"Secret {given.spec.secret_name} exists and is not managed by mtls-operator; "
        "it is left untouched (delete it or choose another secretName)",
        retry=True,
    )


def wrong_secret_type(given: Input) -> Violation | None:
    """The type of a Secret cannot change; one of another type cannot hold
    a certificate the way pods expect."""
    if given.secret is None or given.secret.secret_type in (SECRET_TYPE, ""):
        return None
    return Violation(
        Reason.SECRET_CONFLICT,
        f"Secret {given.spec.secret_name} has type {given.secret.secret_type}, not {SECRET_TYPE}; "
        "delete it and it is created again with the right type",
    )


def ca_expired(given: Input) -> Violation | None:
    if given.now <= given.ca.not_after:
        return None
    return Violation(
        Reason.CA_INVALID,
        f"the CA {given.ca.subject!r} expired at {given.ca.not_after.isoformat()}",
    )


BLOCKING_CHECKS: tuple[Check, ...] = (
    revoke_request_readable,
    identity_allowed,
    older_claimant,
    unmanaged_secret,
    wrong_secret_type,
    ca_expired,
)


# --- Issuance triggers, in the order of the specification. ---


def secret_missing(given: Input) -> Violation | None:
    if given.secret is not None:
        return None
    return Violation(Trigger.SECRET_MISSING, f"Secret {given.spec.secret_name} does not exist")


def secret_invalid(given: Input) -> Violation | None:
    if given.secret is None or given.secret.problem is None:
        return None
    return Violation(
        Trigger.SECRET_INVALID, f"Secret {given.spec.secret_name}: {given.secret.problem}"
    )


def key_mismatch(given: Input) -> Violation | None:
    if given.secret is None or given.secret.key_matches:
        return None
    return Violation(
        Trigger.KEY_MISMATCH, f"{TLS_KEY} does not belong to the certificate in {TLS_CRT}"
    )


def revoked(given: Input) -> Violation | None:
    """The held certificate is revoked (and recorded: re-issuing before
    would lose the only note of which serial to list)."""
    asked = held_revocation(given)
    if asked is None or not given.revocation_recorded:
        return None
    return Violation(
        Trigger.REVOKED,
        f"certificate {asked.leaf.serial_number} was revoked ({asked.request.reason.value})",
    )


def issuer_changed(given: Input) -> Violation | None:
    leaf = given.secret.leaf if given.secret else None
    if leaf is None:
        return None
    same_issuer = leaf.issuer == given.ca.subject
    same_key = leaf.authority_key_id in (None, given.ca.key_identifier)
    if same_issuer and same_key:
        return None
    return Violation(
        Trigger.ISSUER_CHANGED,
        f"the certificate was not issued by the current CA {given.ca.subject!r}",
    )


def spec_changed(given: Input) -> Violation | None:
    if given.secret is None:
        return None
    if given.secret.annotations.get(SPEC_HASH_ANNOTATION) == given.spec.issuance_hash():
        return None
    return Violation(Trigger.SPEC_CHANGED, "the certificate no longer matches the spec")


def expired(given: Input) -> Violation | None:
    leaf = given.secret.leaf if given.secret else None
    if leaf is None or given.now < leaf.not_after:
        return None
    return Violation(Trigger.EXPIRED, f"the certificate expired at {leaf.not_after.isoformat()}")


def renewal_due(given: Input) -> Violation | None:
    if given.secret is None:
        return None
    due = renewal.secret_renewal_time(
        given.spec, given.certificate.uid, given.secret, given.ca.not_after
    )
    if due is None or given.now < due:
        return None
    return Violation(Trigger.RENEWAL_DUE, f"renewal was due at {due.isoformat()}")


def manual_renewal(given: Input) -> Violation | None:
    """A renew-requested-at value that no issuance has honoured yet."""
    requested = given.certificate.renewal_request
    if given.secret is None or not renewal.requested_renewal_pending(requested, given.secret):
        return None
    return Violation(Trigger.MANUAL_RENEWAL, f"renewal was requested at {requested}")


ISSUANCE_CHECKS: tuple[Check, ...] = (
    secret_missing,
    secret_invalid,
    key_mismatch,
    revoked,
    issuer_changed,
    spec_changed,
    expired,
    renewal_due,
    manual_renewal,
)


def first_violation(checks: tuple[Check, ...], given: Input) -> Violation | None:
    for check in checks:
        violation = check(given)
        if violation is not None:
            return violation
    return None


# --- Drift: the certificate is fine, the Secret around it is not. ---


def drift(given: Input) -> tuple[Drift, ...]:
    """What to repair in an otherwise valid Secret, in a fixed order."""
    secret, spec, certificate = given.secret, given.spec, given.certificate
    if secret is None:
        return ()
    found = []
    if secret.trust_bundle_sha256 != given.ca.trust_bundle_sha256:
        found.append(Drift.TRUST_BUNDLE)
    if _metadata_drifted(certificate, spec, secret):
        found.append(Drift.SECRET_TEMPLATE)
    owned = certificate.uid in secret.owner_uids
    if owned == spec.retain_secret:
        found.append(Drift.OWNER_REFERENCE)
    if secret.data_keys & MANAGED_DATA_KEYS != spec.data_keys:
        found.append(Drift.OUTPUT_FORMATS)
    if _keystore_password_changed(given, secret):
        found.append(Drift.KEYSTORE_PASSWORD)
    return tuple(found)


def _keystore_password_changed(given: Input, secret: SecretFacts) -> bool:
    """Keystores encrypted with another password than the Secret names now.
    A Secret that records none (written before the digest was) is taken as
    it is: an upgrade rewrites nothing."""
    recorded = secret.annotations.get(KEYSTORE_PASSWORD_ANNOTATION)
    return (
        given.spec.pkcs12_password is not None
        and recorded is not None
        and given.keystore_password is not None
        and recorded != given.keystore_password
    )


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
    items: tuple[Drift, ...]


@dataclass(frozen=True)
class UpToDate:
    secret: SecretFacts


Decision = Blocked | Revoke | Issue | Repair | UpToDate


def decide(given: Input) -> Decision:
    asked = held_revocation(given)
    if asked is not None and not given.revocation_recorded:
        # Before any blocker: a certificate the policy no longer allows
        # may still be revoked (only its re-issuance is refused).
        return asked
    blocker = first_violation(BLOCKING_CHECKS, given)
    if blocker is not None:
        return Blocked(blocker)
    trigger = first_violation(ISSUANCE_CHECKS, given)
    if trigger is not None or given.secret is None:
        # (No trigger fires only for an existing Secret with a valid key pair.)
        return Issue(trigger or Violation(Trigger.SECRET_MISSING, "no Secret"))
    items = drift(given)
    return Repair(given.secret, items) if items else UpToDate(given.secret)
