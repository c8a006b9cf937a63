"""The decision to roll a workload that follows reloads, as tables: first
sight is recorded without a roll, a drift repair changes nothing the pods
run, a rollout under way is not started over, changes close together roll
once, and rolls wait their turn of the operator-wide bucket. Time is given,
never read."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.outputs import CA_CRT
from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
    record_patch,
    roll_patch,
)
from mtls_operator.policy.rollout import (
    CHECKS,
    DIGEST_LENGTH,
    Input,
    Mounted,
    Record,
    Roll,
    UpToDate,
    Wait,
    WaitReason,
    decide,
    digest,
    needs_turn,
    rate_limited,
)
from mtls_operator.workloads.mounts import recorded_digest

from support.authorities import make_ca
from support.clock import NOW
from support.objects import (
    apply_merge_patch,
    certificate_spec,
    secret_body,
    with_data,
    with_metadata,
)

td = datetime.timedelta
WINDOW = td(seconds=10)
WEB = Mounted.secret("web-tls", "0a1b", "ca-1")
DB = Mounted.secret("db-tls", "77", "ca-1")
BUNDLE = Mounted.trust_bundle("mtls-ca-bundle", "ca-1")
RUNNING = digest([WEB, DB])
WANTED = digest([dataclasses.replace(WEB, serial="0a1c"), DB])


def given(**changes: Any) -> Input:
    """A workload whose mounts changed a minute ago, with a token to roll."""
    base = Input(
        recorded=RUNNING,
        wanted=WANTED,
        rolling=False,
        differs_since=NOW - td(minutes=1),
        now=NOW,
        window=WINDOW,
        turn=None,
    )
    return dataclasses.replace(base, **changes)


# --- the decision, check by check ---


@pytest.mark.parametrize(
    ("changes", "decision"),
    [
        pytest.param({}, Roll(WANTED), id="changed, window over, token there"),
        pytest.param({"recorded": None}, Record(WANTED), id="first sight"),
        pytest.param(
            {"recorded": None, "rolling": True, "differs_since": NOW, "turn": NOW + td(seconds=1)},
            Record(WANTED),
            id="first sight wins over the rest",
        ),
        pytest.param({"recorded": WANTED}, UpToDate(), id="up to date"),
        pytest.param(
            {"recorded": WANTED, "rolling": True}, UpToDate(), id="up to date while rolling"
        ),
        pytest.param({"rolling": True}, Wait(None, WaitReason.ROLLING), id="rolling"),
        pytest.param(
            {"rolling": True, "differs_since": NOW},
            Wait(None, WaitReason.ROLLING),
            id="rolling and coalescing",
        ),
        pytest.param(
            {"differs_since": NOW - td(seconds=3)},
            Wait(NOW + td(seconds=7), WaitReason.COALESCING),
            id="coalescing",
        ),
        pytest.param(
            {"differs_since": None},
            Wait(NOW + WINDOW, WaitReason.COALESCING),
            id="difference first seen now",
        ),
        pytest.param({"differs_since": NOW - WINDOW}, Roll(WANTED), id="window just over"),
        pytest.param(
            {"differs_since": NOW, "turn": NOW + td(seconds=30)},
            Wait(NOW + WINDOW, WaitReason.COALESCING),
            id="coalescing and rate limited",
        ),
        pytest.param(
            {"turn": NOW + td(seconds=2)},
            Wait(NOW + td(seconds=2), WaitReason.RATE_LIMITED),
            id="bucket empty",
        ),
        pytest.param({"turn": NOW}, Roll(WANTED), id="turn now"),
        pytest.param({"turn": NOW - td(seconds=5)}, Roll(WANTED), id="turn past"),
        pytest.param({"window": td(0), "differs_since": None}, Roll(WANTED), id="no window"),
    ],
)
def test_decide(changes: dict[str, Any], decision: object) -> None:
    assert decide(given(**changes)) == decision


def test_the_bucket_is_the_last_check() -> None:
    """So that a turn is asked for only by a workload that would roll."""
    assert CHECKS[-1] is rate_limited


@pytest.mark.parametrize(
    ("changes", "needed"),
    [
        pytest.param({}, True, id="would roll"),
        pytest.param({"turn": NOW + td(seconds=2)}, True, id="turn already asked for"),
        pytest.param({"recorded": None}, False, id="first sight"),
        pytest.param({"recorded": WANTED}, False, id="up to date"),
        pytest.param({"rolling": True}, False, id="rolling"),
        pytest.param({"differs_since": NOW}, False, id="coalescing"),
    ],
)
def test_a_turn_is_needed_only_by_a_workload_that_would_roll(
    changes: dict[str, Any], needed: bool
) -> None:
    assert needs_turn(given(**changes)) is needed


# --- stories, told with the caller's bookkeeping ---


def test_two_certificates_changing_a_second_apart_roll_once_after_the_window() -> None:
    web, db = dataclasses.replace(WEB, serial="0b"), dataclasses.replace(DB, serial="78")
    first_seen = NOW
    looks = [
        (NOW, digest([web, DB])),  # web-tls re-issued
        (NOW + td(seconds=1), digest([web, db])),  # db-tls a second later
        (NOW + td(seconds=5), digest([web, db])),  # anything else about the workload
        (NOW + WINDOW, digest([web, db])),  # the time the waits asked for
    ]
    decisions = [
        decide(given(wanted=wanted, differs_since=first_seen, now=now)) for now, wanted in looks
    ]
    assert decisions == [
        Wait(NOW + WINDOW, WaitReason.COALESCING),
        Wait(NOW + WINDOW, WaitReason.COALESCING),
        Wait(NOW + WINDOW, WaitReason.COALESCING),
        Roll(digest([web, db])),
    ]
    # Rolled: the record now says what the pods run, while they roll and after.
    after = given(recorded=digest([web, db]), wanted=digest([web, db]), now=NOW + WINDOW)
    assert decide(dataclasses.replace(after, rolling=True)) == UpToDate()
    assert decide(dataclasses.replace(after, now=NOW + td(hours=1))) == UpToDate()


def test_a_change_while_rolling_rolls_once_the_rollout_is_done() -> None:
    during = given(rolling=True, differs_since=NOW - td(seconds=30))
    assert decide(during) == Wait(None, WaitReason.ROLLING)
    assert decide(dataclasses.replace(during, rolling=False)) == Roll(WANTED)


def test_opting_in_records_without_rolling_and_the_next_change_rolls() -> None:
    assert decide(given(recorded=None, wanted=RUNNING)) == Record(RUNNING)
    assert decide(given(recorded=RUNNING, wanted=RUNNING)) == UpToDate()
    assert decide(given(recorded=RUNNING, wanted=WANTED)) == Roll(WANTED)


# --- the digest: content identity, and nothing else ---

CA = make_ca()
OTHER_CA = make_ca()
SPEC = certificate_spec()
ISSUED = secret_body(SPEC, CA)


def identity(body: dict[str, Any]) -> Mounted:
    """What the caller reads from a managed Secret's facts."""
    facts = read_secret(body)
    assert facts.leaf is not None
    assert facts.trust_bundle_sha256 is not None
    return Mounted.secret(facts.name, facts.leaf.serial_number, facts.trust_bundle_sha256)


@pytest.mark.parametrize(
    "repaired",
    [
        pytest.param(with_metadata(ISSUED, labels={"team": "shop"}), id="labels"),
        pytest.param(with_metadata(ISSUED, annotations={"note": "x"}), id="annotations"),
        pytest.param(with_metadata(ISSUED, owner_references=[]), id="owner reference"),
        pytest.param(with_data(ISSUED, {"tls-combined.pem": b"pem"}), id="output formats"),
    ],
)
def test_a_drift_repair_is_up_to_date(repaired: dict[str, Any]) -> None:
    running = digest([identity(ISSUED)])
    wanted = digest([identity(repaired)])
    assert wanted == running
    assert decide(given(recorded=running, wanted=wanted)) == UpToDate()


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(secret_body(SPEC, CA), id="re-issued: new serial"),
        pytest.param(with_data(ISSUED, {CA_CRT: OTHER_CA.trust_bundle_pem}), id="ca.crt changed"),
    ],
)
def test_a_new_certificate_or_trust_bundle_rolls(changed: dict[str, Any]) -> None:
    running = digest([identity(ISSUED)])
    wanted = digest([identity(changed)])
    assert wanted != running
    assert decide(given(recorded=running, wanted=wanted)) == Roll(wanted)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param([WEB, DB, BUNDLE], [BUNDLE, DB, WEB], id="order"),
        pytest.param([WEB, DB], [WEB, DB, WEB], id="a mount named twice"),
        pytest.param([BUNDLE], [Mounted.trust_bundle("mtls-ca-bundle", "ca-1")], id="equal facts"),
    ],
)
def test_the_digest_ignores(one: list[Mounted], other: list[Mounted]) -> None:
    assert digest(one) == digest(other)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param([dataclasses.replace(WEB, serial="0a1c"), DB], id="a serial"),
        pytest.param([dataclasses.replace(WEB, ca_fingerprint="ca-2"), DB], id="a ca.crt"),
        pytest.param([WEB, DB, BUNDLE], id="a trust bundle mounted"),
        pytest.param([WEB], id="a mount gone"),
        pytest.param([dataclasses.replace(WEB, name="api-tls"), DB], id="a name"),
    ],
)
def test_the_digest_changes_with(other: list[Mounted]) -> None:
    assert digest(other) != digest([WEB, DB])


def test_a_trust_bundle_change_changes_the_digest() -> None:
    assert digest([Mounted.trust_bundle("mtls-ca-bundle", "ca-2")]) != digest([BUNDLE])


def test_a_secret_and_a_config_map_of_one_name_differ() -> None:
    assert digest([Mounted.secret("x", "", "f")]) != digest([Mounted.trust_bundle("x", "f")])


def test_the_digest_is_pinned() -> None:
    """A change of what is hashed would roll every workload that follows
    reloads, all at once, on upgrade: it must come with a migration."""
    assert digest([WEB, DB, BUNDLE]) == "0ba1234d6d7b2390"
    assert digest([]) == "4f53cda18c2baa0c"
    assert len(digest([WEB])) == DIGEST_LENGTH
    assert int(digest([WEB]), 16) >= 0


# --- the patches of the two outcomes ---


def test_the_roll_patch_changes_the_pod_template_and_the_record() -> None:
    assert roll_patch("0123456789abcdef", "42") == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {MOUNTED_DIGEST_ANNOTATION: "0123456789abcdef"},
        },
        "spec": {
            "template": {
                "metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: "0123456789abcdef"}}
            }
        },
    }


def test_the_record_patch_leaves_the_pod_template() -> None:
    assert record_patch("0123456789abcdef", "42") == {
        "metadata": {
            "resourceVersion": "42",
            "annotations": {MOUNTED_DIGEST_ANNOTATION: "0123456789abcdef"},
        }
    }


DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "web", "generation": 3, "annotations": {"keep": "me"}},
    "spec": {
        "replicas": 1,
        "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "t"}}},
    },
    "status": {
        "observedGeneration": 3,
        "replicas": 1,
        "updatedReplicas": 1,
        "availableReplicas": 1,
    },
}


@pytest.mark.parametrize("patch", [roll_patch, record_patch])
def test_what_a_patch_records_is_read_back_and_others_annotations_stay(patch: Any) -> None:
    patched = apply_merge_patch(DEPLOYMENT, patch(WANTED, "7"))
    assert recorded_digest(patched) == WANTED
    assert patched["metadata"]["annotations"]["keep"] == "me"
    template = patched["spec"]["template"]["metadata"]["annotations"]
    assert template["kubectl.kubernetes.io/restartedAt"] == "t"
    assert decide(given(recorded=recorded_digest(patched), wanted=WANTED)) == UpToDate()
