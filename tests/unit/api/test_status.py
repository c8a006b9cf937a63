from __future__ import annotations

import datetime
from typing import Any

import pytest

from mtls_operator.api.managed_secret import LeafFacts
from mtls_operator.api.status import (
    READY,
    RECONCILING,
    RECONCILING_REASONS,
    STALLED,
    STALLED_REASONS,
    Reason,
    condition,
    failed_status,
    ready_condition,
    ready_status,
    same_status,
)

from support.clock import NOW

td = datetime.timedelta
EARLIER = "2026-11-01T08:00:00Z"
NOW_TEXT = "2026-11-28T12:00:00Z"
LEAF = LeafFacts(
    serial_number="1f2e3d",
    fingerprint_sha256="ab" * 32,
    not_before=NOW - td(minutes=5),
    not_after=NOW + td(hours=2160),
    issuer="CN=Test Root CA",
    authority_key_id=b"\x01" * 20,
)


def ready(status: str, reason: str = Reason.ISSUED, since: str = EARLIER) -> dict[str, Any]:
    return {
        "type": READY,
        "status": status,
        "reason": reason,
        "message": "m",
        "observedGeneration": 1,
        "lastTransitionTime": since,
    }


# --- condition ---


@pytest.mark.parametrize(
    ("previous", "status", "since"),
    [
        ({}, "True", NOW_TEXT),
        ({"conditions": [ready("True")]}, "True", EARLIER),
        ({"conditions": [ready("False")]}, "True", NOW_TEXT),
        ({"conditions": [ready("True")]}, "False", NOW_TEXT),
        ({"conditions": [ready("Unknown")]}, "Unknown", EARLIER),
        ({"conditions": [{"type": READY, "status": "True"}]}, "True", NOW_TEXT),
        ({"conditions": [{**ready("False"), "type": STALLED}]}, "False", NOW_TEXT),
        ({"conditions": None}, "False", NOW_TEXT),
    ],
    ids=[
        "first",
        "same-status",
        "false-to-true",
        "true-to-false",
        "unknown-stays",
        "same-status-without-time",
        "other-type-only",
        "null-conditions",
    ],
)
def test_last_transition_time_moves_only_with_the_status(
    previous: dict[str, Any], status: str, since: str
) -> None:
    made = condition(
        previous, kind=READY, status=status, reason="Renewed", message="new", generation=4, now=NOW
    )
    assert made == {
        "type": READY,
        "status": status,
        "reason": "Renewed",
        "message": "new",
        "observedGeneration": 4,
        "lastTransitionTime": since,
    }


# --- ready_status ---


def test_ready_status_layout() -> None:
    previous = {
        "conditions": [
            ready("False", Reason.INVALID_SPEC),
            {**ready("True", Reason.INVALID_SPEC), "type": STALLED},
        ],
        "failedIssuanceAttempts": 3,
        "lastFailureTime": EARLIER,
    }
    status = ready_status(
        previous,
        generation=5,
        reason=Reason.RENEWED,
        message="certificate 1f2e3d issued",
        leaf=LEAF,
        renewal=NOW + td(hours=1440),
        issuer="CN=Test Root CA",
        revision=2,
        now=NOW,
    )
    assert status == {
        "conditions": [
            {
                "type": READY,
                "status": "True",
                "reason": Reason.RENEWED,
                "message": "certificate 1f2e3d issued",
                "observedGeneration": 5,
                "lastTransitionTime": NOW_TEXT,
            }
        ],
        "observedGeneration": 5,
        "notBefore": "2026-11-28T11:55:00Z",
        "notAfter": "2027-02-26T12:00:00Z",
        "renewalTime": "2027-01-27T12:00:00Z",
        "serialNumber": "1f2e3d",
        "fingerprintSHA256": "ab" * 32,
        "issuer": "CN=Test Root CA",
        "revision": 2,
        # None deletes the field in a merge patch.
        "lastFailureTime": None,
        "failedIssuanceAttempts": 0,
    }


def test_ready_again_keeps_the_transition_time() -> None:
    status = ready_status(
        {"conditions": [ready("True")]},
        generation=1,
        reason=Reason.ISSUED,
        message="m",
        leaf=LEAF,
        renewal=NOW,
        issuer="CN=Test Root CA",
        revision=1,
        now=NOW,
    )
    assert status["conditions"][0]["lastTransitionTime"] == EARLIER


# --- failed_status ---

ISSUED_STATUS: dict[str, Any] = {
    "conditions": [ready("True")],
    "observedGeneration": 1,
    "notAfter": "2027-02-26T12:00:00Z",
    "serialNumber": "1f2e3d",
    "revision": 4,
    "failedIssuanceAttempts": 0,
    "lastFailureTime": None,
}


@pytest.mark.parametrize(
    ("reason", "second"),
    [
        (Reason.INVALID_SPEC, STALLED),
        (Reason.CA_INVALID, STALLED),
        (Reason.SECRET_CONFLICT, STALLED),
        (Reason.POLICY_DENIED, STALLED),
        (Reason.CA_NOT_FOUND, RECONCILING),
        (Reason.ISSUANCE_FAILED, RECONCILING),
        (Reason.EXPIRED, RECONCILING),
    ],
)
def test_stalled_for_what_retrying_cannot_fix_reconciling_for_the_rest(
    reason: str, second: str
) -> None:
    status = failed_status(
        ISSUED_STATUS, generation=2, reason=reason, message="why", now=NOW, attempt_failed=False
    )
    expected = [
        {
            "type": READY,
            "status": "False",
            "reason": reason,
            "message": "why",
            "observedGeneration": 2,
            "lastTransitionTime": NOW_TEXT,
        }
    ]
    expected.append({**expected[0], "type": second, "status": "True"})
    assert status["conditions"] == expected
    assert status["observedGeneration"] == 2


def test_failure_keeps_the_facts_of_the_certificate_in_the_secret() -> None:
    status = failed_status(
        ISSUED_STATUS,
        generation=2,
        reason=Reason.CA_NOT_FOUND,
        message="CA Secret x/y does not exist",
        now=NOW,
        attempt_failed=False,
    )
    assert {k: v for k, v in status.items() if k not in ("conditions", "observedGeneration")} == {
        "notAfter": "2027-02-26T12:00:00Z",
        "serialNumber": "1f2e3d",
        "revision": 4,
        "failedIssuanceAttempts": 0,
        "lastFailureTime": None,
    }


@pytest.mark.parametrize(
    ("previous", "attempt_failed", "attempts", "last_failure"),
    [
        ({}, True, 1, NOW_TEXT),
        ({}, False, None, None),
        ({"failedIssuanceAttempts": 2, "lastFailureTime": EARLIER}, True, 3, NOW_TEXT),
        ({"failedIssuanceAttempts": 2, "lastFailureTime": EARLIER}, False, 2, EARLIER),
        ({"failedIssuanceAttempts": None}, True, 1, NOW_TEXT),
    ],
    ids=["first-failure", "no-attempt", "third-failure", "waiting-not-counted", "null-count"],
)
def test_failed_issuance_attempts_are_counted(
    previous: dict[str, Any], attempt_failed: bool, attempts: int | None, last_failure: str | None
) -> None:
    status = failed_status(
        previous,
        generation=1,
        reason=Reason.ISSUANCE_FAILED,
        message="m",
        now=NOW,
        attempt_failed=attempt_failed,
    )
    assert status.get("failedIssuanceAttempts") == attempts
    assert status.get("lastFailureTime") == last_failure


def test_stalled_keeps_its_transition_time_while_stalled() -> None:
    previous = {
        "conditions": [ready("False", Reason.INVALID_SPEC), {**ready("True"), "type": STALLED}]
    }
    status = failed_status(
        previous,
        generation=3,
        reason=Reason.INVALID_SPEC,
        message="m",
        now=NOW,
        attempt_failed=False,
    )
    assert [c["lastTransitionTime"] for c in status["conditions"]] == [EARLIER, EARLIER]


def test_ready_condition() -> None:
    assert ready_condition({"conditions": [{"type": STALLED}, ready("True")]}) == ready("True")
    assert ready_condition({"conditions": [{"type": STALLED}]}) is None
    assert ready_condition({}) is None


# --- same_status ---

WANTED: dict[str, Any] = {
    "conditions": [ready("True", since=NOW_TEXT)],
    "observedGeneration": 1,
    "revision": 4,
    "lastFailureTime": None,
}


@pytest.mark.parametrize(
    ("current", "same"),
    [
        (WANTED, True),
        ({**WANTED, "conditions": [ready("True", since=EARLIER)]}, True),
        ({**WANTED, "notAfter": "2027-02-26T12:00:00Z"}, True),
        ({k: v for k, v in WANTED.items() if k != "lastFailureTime"}, True),
        ({**WANTED, "conditions": [{**ready("True"), "message": "other"}]}, False),
        ({**WANTED, "conditions": [ready("True", reason=Reason.RENEWED)]}, False),
        ({**WANTED, "conditions": [ready("False")]}, False),
        ({**WANTED, "conditions": [ready("True"), {**ready("True"), "type": STALLED}]}, False),
        ({**WANTED, "conditions": []}, False),
        ({**WANTED, "revision": 3}, False),
        ({**WANTED, "lastFailureTime": EARLIER}, False),
        ({k: v for k, v in WANTED.items() if k != "observedGeneration"}, False),
        ({}, False),
    ],
    ids=[
        "identical",
        "transition-time-differs",
        "extra-field-in-current",
        "null-and-absent",
        "message-differs",
        "reason-differs",
        "status-differs",
        "extra-condition",
        "no-conditions",
        "revision-differs",
        "failure-to-clear",
        "field-missing",
        "empty-current",
    ],
)
def test_same_status(current: dict[str, Any], same: bool) -> None:
    assert same_status(current, WANTED) is same


def test_every_failure_is_either_stalled_or_reconciling() -> None:
    failures = set(Reason) - {Reason.ISSUED, Reason.RENEWED, Reason.REISSUED}
    assert failures == STALLED_REASONS | RECONCILING_REASONS
    assert not STALLED_REASONS & RECONCILING_REASONS
