"""When a certificate is renewed: notAfter minus renewBefore, minus a
deterministic jitter so that certificates created together do not all
renew in the same second."""

from __future__ import annotations

import datetime
import hashlib

from mtls_operator.api.managed_secret import SecretFacts
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE

# A fraction of renewBefore derived from the uid, so it is the same after
# every restart; never more than an hour.
MAX_JITTER_FRACTION = 0.1
MAX_JITTER = datetime.timedelta(hours=1)


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
