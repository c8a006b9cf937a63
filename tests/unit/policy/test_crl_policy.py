"""Whether a CA's CRL must be signed again: each check of the chain on real
CRLs signed by a real CA, the order of the chain, which entries a CRL
signed now lists, and when the current CRL falls due by time alone."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mtls_operator.api.revocations import (
    CRL_KEY,
    RevocationStore,
    StoredRevocation,
    entry_key,
    entry_value,
    read_store,
    store_body,
)
from mtls_operator.pki import CertificateAuthority, CRLLoadError, Revocation, RevocationReason
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.crl import crl_facts, crl_to_pem, sign_crl
from mtls_operator.policy import crl as policy
from mtls_operator.policy.crl import CRLInput, CRLSettings, CRLTrigger
from mtls_operator.policy.violation import Violation

from support.authorities import make_ca
from support.clock import NOW

td = datetime.timedelta
# The default settings: a CRL is valid for 7 days and signed again 2 days
# before it expires, so an entry stays listed 5 days past its notAfter.
SETTINGS = CRLSettings()
CRL_PERIOD = td(days=5)
REFRESH_AT = NOW + td(days=5)  # of a CRL signed at NOW
REVOKED_AT = NOW - td(hours=1)
NOT_AFTER = NOW + td(days=30)


@dataclass(frozen=True)
class World:
    ca: CertificateAuthority
    other_ca: CertificateAuthority  # another key
    renewed_ca: CertificateAuthority  # the same key, certified again


@pytest.fixture(scope="module")
def world(ecdsa_ca: CertificateAuthority) -> World:
    return World(
        ca=ecdsa_ca,
        other_ca=make_ca(common_name="Other Root CA"),
        renewed_ca=make_ca(common_name="Test Root CA", key=ecdsa_ca.private_key),
    )


def revoked(serial: int, not_after: datetime.datetime = NOT_AFTER) -> Revocation:
    return Revocation(serial, REVOKED_AT, RevocationReason.KEY_COMPROMISE, not_after)


def signed(
    ca: CertificateAuthority,
    *revocations: Revocation,
    this_update: datetime.datetime = NOW,
    number: int = 1,
) -> str:
    """A CRL (PEM) signed by `ca`, valid for the default 7 days from `this_update`."""
    der = sign_crl(
        ca,
        revocations,
        number=number,
        this_update=this_update,
        next_update=this_update + SETTINGS.validity,
    )
    return crl_to_pem(der).decode()


def record(*revocations: Revocation, crl: str = "") -> RevocationStore:
    """The CA's revocations ConfigMap holding `revocations` and `crl`, as read."""
    data = {entry_key(r.serial_number): entry_value(StoredRevocation(r)) for r in revocations}
    if crl:
        data[CRL_KEY] = crl
    store = read_store(store_body("mtls-system", "mtls-operator-ca-revocations", data))
    assert store.problems == ()
    return store


def given(
    ca: CertificateAuthority,
    store: RevocationStore | None,
    *,
    now: datetime.datetime = NOW,
    settings: CRLSettings = SETTINGS,
) -> CRLInput:
    """The input the CRL signer gathers: what the stored CRL says, if it can be read."""
    current = None
    if store is not None and store.crl_pem:
        try:
            current = crl_facts(store.crl_pem.encode())
        except CRLLoadError:
            current = None
    return CRLInput(ca, store, current, now, settings)


def current(w: World, *revocations: Revocation, now: datetime.datetime = NOW) -> CRLInput:
    """A record of `revocations` whose CRL, signed at NOW, lists them all."""
    return given(w.ca, record(*revocations, crl=signed(w.ca, *revocations)), now=now)


Case = Callable[[World], CRLInput]

MISSING = Violation(CRLTrigger.MISSING, "the CA has no CRL yet")
MISSING_CASES: list[tuple[str, Case, Violation | None]] = [
    ("no-record", lambda w: given(w.ca, None), MISSING),
    ("record-without-crl", lambda w: given(w.ca, record()), MISSING),
    ("entries-without-crl", lambda w: given(w.ca, record(revoked(0x1F))), MISSING),
    ("crl", current, None),
    # Whether it can be read is the next check's question.
    ("unreadable-crl", lambda w: given(w.ca, record(crl="not a CRL")), None),
]

UNREADABLE = Violation(CRLTrigger.UNREADABLE, "the stored CRL cannot be read")
UNREADABLE_CASES: list[tuple[str, Case, Violation | None]] = [
    ("readable", current, None),
    ("text", lambda w: given(w.ca, record(crl="not a CRL")), UNREADABLE),
    (
        "a-certificate",
        lambda w: given(w.ca, record(crl=certificates_to_pem([w.ca.certificate]).decode())),
        UNREADABLE,
    ),
    (
        "truncated",
        lambda w: given(w.ca, record(crl=signed(w.ca)[:120])),
        UNREADABLE,
    ),
]

SIGNER_CHANGED = Violation(CRLTrigger.SIGNER_CHANGED, "the CRL was signed by another CA key")
SIGNER_CHANGED_CASES: list[tuple[str, Case, Violation | None]] = [
    ("same-ca", current, None),
    ("same-key-certified-again", lambda w: given(w.renewed_ca, record(crl=signed(w.ca))), None),
    ("another-ca", lambda w: given(w.other_ca, record(crl=signed(w.ca))), SIGNER_CHANGED),
    ("unreadable", lambda w: given(w.other_ca, record(crl="not a CRL")), None),
]


def changed(added: int, dropped: int) -> Violation:
    return Violation(
        CRLTrigger.ENTRIES_CHANGED, f"{added} revocation(s) to add, {dropped} expired to drop"
    )


EXPIRED = NOW - CRL_PERIOD - td(seconds=1)  # a notAfter whose entry may go at NOW
ENTRIES_CHANGED_CASES: list[tuple[str, Case, Violation | None]] = [
    ("none", current, None),
    ("all-listed", lambda w: current(w, revoked(0x1F), revoked(0x2A)), None),
    (
        "recorded-in-another-order",
        lambda w: given(
            w.ca,
            record(revoked(0x2A), revoked(0x1F), crl=signed(w.ca, revoked(0x1F), revoked(0x2A))),
        ),
        None,
    ),
    (
        "one-new",
        lambda w: given(
            w.ca, record(revoked(0x1F), revoked(0x2A), crl=signed(w.ca, revoked(0x1F)))
        ),
        changed(1, 0),
    ),
    (
        "first-revocation",
        lambda w: given(w.ca, record(revoked(0x1F), crl=signed(w.ca))),
        changed(1, 0),
    ),
    (
        "one-expired",
        lambda w: given(
            w.ca,
            record(revoked(0x1F, EXPIRED), crl=signed(w.ca, revoked(0x1F, EXPIRED))),
        ),
        changed(0, 1),
    ),
    (
        "expired-but-still-in-its-period",
        lambda w: current(w, revoked(0x1F, EXPIRED + td(seconds=1))),
        None,
    ),
    (
        "one-new-one-expired",
        lambda w: given(
            w.ca,
            record(revoked(0x1F, EXPIRED), revoked(0x2A), crl=signed(w.ca, revoked(0x1F, EXPIRED))),
        ),
        changed(1, 1),
    ),
    (
        # Counted as expired, though it was taken out of the record.
        "removed-from-the-record",
        lambda w: given(w.ca, record(crl=signed(w.ca, revoked(0x1F)))),
        changed(0, 1),
    ),
    (
        "unreadable",
        lambda w: given(w.ca, record(revoked(0x1F), crl="not a CRL")),
        None,
    ),
]


def refresh(due: datetime.datetime) -> Violation:
    return Violation(CRLTrigger.REFRESH_DUE, f"the CRL was due to be signed again at {due}")


REFRESH_DUE_CASES: list[tuple[str, Case, Violation | None]] = [
    ("just-signed", current, None),
    ("a-second-before", lambda w: current(w, now=REFRESH_AT - td(seconds=1)), None),
    ("at-the-refresh-time", lambda w: current(w, now=REFRESH_AT), refresh(REFRESH_AT)),
    (
        "after-next-update",
        lambda w: current(w, now=NOW + td(days=8)),
        refresh(REFRESH_AT),
    ),
    ("unreadable", lambda w: given(w.ca, record(crl="not a CRL"), now=REFRESH_AT), None),
]


@pytest.mark.parametrize(
    ("check", "case", "expected"),
    [
        *[pytest.param(policy.missing, c, e, id=f"missing-{i}") for i, c, e in MISSING_CASES],
        *[
            pytest.param(policy.unreadable, c, e, id=f"unreadable-{i}")
            for i, c, e in UNREADABLE_CASES
        ],
        *[
            pytest.param(policy.signer_changed, c, e, id=f"signer_changed-{i}")
            for i, c, e in SIGNER_CHANGED_CASES
        ],
        *[
            pytest.param(policy.entries_changed, c, e, id=f"entries_changed-{i}")
            for i, c, e in ENTRIES_CHANGED_CASES
        ],
        *[
            pytest.param(policy.refresh_due, c, e, id=f"refresh_due-{i}")
            for i, c, e in REFRESH_DUE_CASES
        ],
    ],
)
def test_check(world: World, check: policy.Check, case: Case, expected: Violation | None) -> None:
    assert check(case(world)) == expected


def test_checks_run_in_order() -> None:
    assert [check.__name__ for check in policy.CHECKS] == [
        "missing",
        "unreadable",
        "signer_changed",
        "entries_changed",
        "refresh_due",
    ]


FIRST_WINS_CASES: list[tuple[str, Case, str | None]] = [
    ("current", lambda w: current(w, revoked(0x1F)), None),
    # Unreadable too, since there is nothing to read.
    ("no-record", lambda w: given(w.ca, None, now=REFRESH_AT), CRLTrigger.MISSING),
    (
        "unreadable-with-new-entries",
        lambda w: given(w.other_ca, record(revoked(0x1F), crl="not a CRL"), now=REFRESH_AT),
        CRLTrigger.UNREADABLE,
    ),
    (
        "another-signer-new-entries-and-due",
        lambda w: given(w.other_ca, record(revoked(0x1F), crl=signed(w.ca)), now=REFRESH_AT),
        CRLTrigger.SIGNER_CHANGED,
    ),
    (
        "new-entries-and-due",
        lambda w: given(w.ca, record(revoked(0x1F), crl=signed(w.ca)), now=REFRESH_AT),
        CRLTrigger.ENTRIES_CHANGED,
    ),
    ("due", lambda w: current(w, revoked(0x1F), now=REFRESH_AT), CRLTrigger.REFRESH_DUE),
]


@pytest.mark.parametrize(
    ("case", "expected"),
    [pytest.param(c, e, id=i) for i, c, e in FIRST_WINS_CASES],
)
def test_crl_due_names_the_first_check_that_objects(
    world: World, case: Case, expected: str | None
) -> None:
    violation = policy.crl_due(case(world))
    assert (violation.reason if violation is not None else None) == expected


# --- Which entries a CRL signed now lists ---

SHORT = CRLSettings(validity=td(days=1), refresh_before=td(hours=1))  # a 23-hour period


@pytest.mark.parametrize(
    ("settings", "not_after", "listed"),
    [
        pytest.param(SETTINGS, NOW + td(days=30), True, id="not-expired"),
        pytest.param(SETTINGS, NOW - td(days=1), True, id="expired-a-day-ago"),
        pytest.param(SETTINGS, NOW - CRL_PERIOD, True, id="expired-a-period-ago"),
        pytest.param(SETTINGS, NOW - CRL_PERIOD - td(seconds=1), False, id="a-second-later"),
        pytest.param(SETTINGS, NOW - td(days=7), False, id="expired-a-validity-ago"),
        pytest.param(SHORT, NOW - td(hours=23), True, id="short-period"),
        pytest.param(SHORT, NOW - td(hours=23, seconds=1), False, id="short-period-a-second-later"),
    ],
)
def test_an_entry_is_listed_until_a_crl_period_after_its_not_after(
    world: World, settings: CRLSettings, not_after: datetime.datetime, listed: bool
) -> None:
    entry = revoked(0x1F, not_after)
    assert given(world.ca, record(entry), settings=settings).listed == ((entry,) if listed else ())


def test_only_the_entries_still_due_are_listed(world: World) -> None:
    kept, dropped = revoked(0x1F), revoked(0x2A, EXPIRED)
    listed = given(world.ca, record(kept, dropped)).listed
    assert listed == (kept,)


def test_no_record_lists_nothing(world: World) -> None:
    assert given(world.ca, None).listed == ()


# --- When the current CRL falls due by time alone ---


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(lambda w: given(w.ca, None), None, id="no-record"),
        pytest.param(lambda w: given(w.ca, record(crl="not a CRL")), None, id="unreadable"),
        pytest.param(current, REFRESH_AT, id="no-entries"),
        pytest.param(
            lambda w: given(w.ca, record(crl=signed(w.ca, this_update=NOW - td(days=1)))),
            REFRESH_AT - td(days=1),
            id="signed-a-day-ago",
        ),
        pytest.param(lambda w: current(w, revoked(0x1F)), REFRESH_AT, id="entry-expires-later"),
        pytest.param(
            lambda w: current(w, revoked(0x1F, NOW - td(days=4))),
            NOW + td(days=1, seconds=1),
            id="entry-may-go-first",
        ),
        pytest.param(
            lambda w: current(w, revoked(0x1F, NOW - td(days=2)), revoked(0x2A, NOW - td(days=4))),
            NOW + td(days=1, seconds=1),
            id="the-first-entry-to-go",
        ),
        pytest.param(
            lambda w: current(w, revoked(0x1F, REFRESH_AT - CRL_PERIOD - td(seconds=1))),
            REFRESH_AT,
            id="entry-may-go-at-the-refresh-time",
        ),
        pytest.param(
            # No longer listed: its going is the entries check's business now.
            lambda w: given(w.ca, record(revoked(0x1F, EXPIRED), crl=signed(w.ca))),
            REFRESH_AT,
            id="entry-gone-already",
        ),
    ],
)
def test_next_look(world: World, case: Case, expected: datetime.datetime | None) -> None:
    assert policy.next_look(case(world)) == expected


def test_at_the_next_look_the_crl_is_due(world: World) -> None:
    """Looking again when next_look says finds the entry to drop, and a
    second earlier finds nothing."""
    entry = revoked(0x1F, NOW - td(days=4))
    look = policy.next_look(current(world, entry))
    assert look is not None
    assert policy.crl_due(current(world, entry, now=look - td(seconds=1))) is None
    assert policy.crl_due(current(world, entry, now=look)) == changed(0, 1)


# --- Settings ---


@pytest.mark.parametrize(
    ("validity", "refresh_before", "message"),
    [
        pytest.param(td(0), td(days=2), "the CRL validity must be positive, not 0s", id="zero"),
        pytest.param(
            td(days=-1),
            td(hours=1),
            "the CRL validity must be positive, not -24h",
            id="negative",
        ),
        pytest.param(
            td(days=7),
            td(days=7),
            "the CRL refresh time 168h must be positive and shorter than its validity 168h",
            id="refresh-equals-validity",
        ),
        pytest.param(
            td(days=1),
            td(days=2),
            "the CRL refresh time 48h must be positive and shorter than its validity 24h",
            id="refresh-longer-than-validity",
        ),
        pytest.param(
            td(days=7),
            td(0),
            "the CRL refresh time 0s must be positive and shorter than its validity 168h",
            id="refresh-zero",
        ),
    ],
)
def test_settings_refuse(validity: td, refresh_before: td, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CRLSettings(validity=validity, refresh_before=refresh_before)


def test_settings_accept_a_refresh_just_shorter_than_the_validity() -> None:
    settings = CRLSettings(validity=td(hours=2), refresh_before=td(hours=2) - td(seconds=1))
    assert settings.validity - settings.refresh_before == td(seconds=1)
