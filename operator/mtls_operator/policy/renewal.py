"""When a certificate is renewed, in one place: the controller schedules and
triggers renewals by it, writes its answer into the status, and the
command line asks for a renewal in the form it honours.

A certificate is due at notAfter minus renewBefore (a third of the lifetime
granted unless the spec says otherwise), minus a deterministic jitter so
that certificates created together do not all renew in the same second. A
renewal asked for by hand is due once per distinct request."""

from __future__ import annotations

import datetime
import hashlib

from mtls_operator.api.managed_secret import RENEWAL_REQUEST_ANNOTATION, SecretFacts
from mtls_operator.api.spec import CertificateSpec
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE

# A fraction of renewBefore derived from the uid, so it is the same after
# every restart; never more than an hour.
MAX_JITTER_FRACTION = 0.1
MAX_JITTER = datetime.timedelta(hours=1)


def renew_before(spec: CertificateSpec, lifetime: datetime.timedelta) -> datetime.timedelta:
    """How long before notAfter to renew a certificate of `lifetime`."""
    if spec.renew_before is not None and spec.renew_before < lifetime:
        return spec.renew_before
    if spec.renew_before_percentage is not None:
        return lifetime * spec.renew_before_percentage / 100
    # Also when the CA cut the lifetime below renewBefore: renewing at
    # once would loop, a third of what was granted does not.
    return lifetime / 3


def renewal_time(
    renew_before: datetime.timedelta,
    not_after: datetime.datetime,
    uid: str,
    ca_not_after: datetime.datetime | None = None,
) -> datetime.datetime:
    """notAfter - renewBefore - jitter.

    A certificate cut to its CA's own expiry is not renewed: the new one
    would be cut again, shorter each time, re-issuing everything ever more
    often. It waits for the CA to be rotated (IssuerChanged) or extended."""
    if ca_not_after is not None and not_after >= ca_not_after:
        return not_after
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


def renewal_due_at(
    spec: CertificateSpec,
    issued: datetime.datetime,
    not_after: datetime.datetime,
    uid: str,
    ca_not_after: datetime.datetime | None = None,
) -> datetime.datetime:
    """When a certificate issued at `issued` is due for renewal;
    renewBefore defaults to a third of the lifetime actually granted."""
    return renewal_time(renew_before(spec, not_after - issued), not_after, uid, ca_not_after)


def secret_renewal_time(
    spec: CertificateSpec, uid: str, secret: SecretFacts, ca_not_after: datetime.datetime | None
) -> datetime.datetime | None:
    """When the certificate in `secret` is due for renewal."""
    start = issued_at(secret)
    if secret.leaf is None or start is None:
        return None
    return renewal_due_at(spec, start, secret.leaf.not_after, uid, ca_not_after)


def renewal_request(now: datetime.datetime) -> str:
    """The value of a renewal asked for by hand: a new one each time, since
    each distinct value is honoured once."""
    return now.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def requested_renewal_pending(requested: str | None, secret: SecretFacts) -> bool:
    """A request no issuance has honoured yet. Each issuance records the
    value it saw, so one request means exactly one re-issuance, whatever
    the clocks of the client and the operator say."""
    return requested is not None and secret.annotations.get(RENEWAL_REQUEST_ANNOTATION) != requested
