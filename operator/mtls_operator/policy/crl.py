"""Whether a CA's CRL must be signed again, and with which entries.

One frozen input (the CA, its revocations record, now, the CRL settings)
goes through an ordered chain of checks; the first that objects names
why a new CRL is signed. No check passing means the published CRL is
current.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable
from dataclasses import dataclass

from mtls_operator.api.durations import format_duration
from mtls_operator.api.revocations import RevocationStore
from mtls_operator.pki import CertificateAuthority
from mtls_operator.pki.crl import CRLFacts, Revocation, live
from mtls_operator.policy.violation import Violation


class CRLTrigger(enum.StrEnum):
    MISSING = "CRLMissing"
    UNREADABLE = "CRLUnreadable"
    SIGNER_CHANGED = "CRLSignerChanged"
    ENTRIES_CHANGED = "RevocationsChanged"
    REFRESH_DUE = "CRLRefreshDue"


@dataclass(frozen=True)
class CRLSettings:
    # How long a CRL is valid (thisUpdate to nextUpdate).
    validity: datetime.timedelta = datetime.timedelta(days=7)
    # Signed again this long before its nextUpdate: room for relying
    # parties to fetch it (and for workloads to be rolled) before the one
    # they hold expires.
    refresh_before: datetime.timedelta = datetime.timedelta(days=2)

    def __post_init__(self) -> None:
        if self.validity <= datetime.timedelta(0):
            raise ValueError(
                f"the CRL validity must be positive, not {format_duration(self.validity)}"
            )
        if not datetime.timedelta(0) < self.refresh_before < self.validity:
            raise ValueError(
                f"the CRL refresh time {format_duration(self.refresh_before)} must be positive "
                f"and shorter than its validity {format_duration(self.validity)}"
            )


@dataclass(frozen=True)
class CRLInput:
    ca: CertificateAuthority
    store: RevocationStore | None
    # What the stored CRL says; None when there is none or it is unreadable.
    current: CRLFacts | None
    now: datetime.datetime
    settings: CRLSettings

    @property
    def listed(self) -> tuple[Revocation, ...]:
        """What a CRL signed now lists: the revocations of certificates
        not yet expired long enough to go (pki.crl.live)."""
        entries = self.store.entries.values() if self.store is not None else ()
        return live(
            (entry.revocation for entry in entries),
            self.now,
            crl_period=self.settings.validity - self.settings.refresh_before,
        )


Check = Callable[[CRLInput], Violation | None]


def missing(given: CRLInput) -> Violation | None:
    if given.store is not None and given.store.crl_pem:
        return None
    return Violation(CRLTrigger.MISSING, "the CA has no CRL yet")


def unreadable(given: CRLInput) -> Violation | None:
    if given.current is not None:
        return None
    return Violation(CRLTrigger.UNREADABLE, "the stored CRL cannot be read")


def signer_changed(given: CRLInput) -> Violation | None:
    if given.current is None or given.current.authority_key_id == given.ca.key_identifier:
        return None
    return Violation(CRLTrigger.SIGNER_CHANGED, "the CRL was signed by another CA key")


def entries_changed(given: CRLInput) -> Violation | None:
    wanted = tuple(sorted(r.serial_number for r in given.listed))
    if given.current is None or wanted == given.current.serial_numbers:
        return None
    added = len(set(wanted) - set(given.current.serial_numbers))
    dropped = len(set(given.current.serial_numbers) - set(wanted))
    return Violation(
        CRLTrigger.ENTRIES_CHANGED, f"{added} revocation(s) to add, {dropped} expired to drop"
    )


def refresh_due(given: CRLInput) -> Violation | None:
    if given.current is None:
        return None
    due = given.current.next_update - given.settings.refresh_before
    if given.now < due:
        return None
    return Violation(CRLTrigger.REFRESH_DUE, f"the CRL was due to be signed again at {due}")


CHECKS: tuple[Check, ...] = (missing, unreadable, signer_changed, entries_changed, refresh_due)


def crl_due(given: CRLInput) -> Violation | None:
    for check in CHECKS:
        violation = check(given)
        if violation is not None:
            return violation
    return None


def next_look(given: CRLInput) -> datetime.datetime | None:
    """When the current CRL falls due by time alone: its refresh time, or
    the first moment an entry may be dropped, whichever is sooner."""
    if given.current is None:
        return None
    times = [given.current.next_update - given.settings.refresh_before]
    crl_period = given.settings.validity - given.settings.refresh_before
    # An entry may go the first second after its last day on the list.
    times += [r.not_after + crl_period + datetime.timedelta(seconds=1) for r in given.listed]
    return min(times)


DEFAULT_CRL = CRLSettings()
