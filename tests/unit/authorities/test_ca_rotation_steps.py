"""Where a CA rotation stands, read from the CA Secret alone, and when a
leaf is ready for the next step, what each step writes, how long the old
root stays: the decisions behind `ca rotate`."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from mtls_operator.authorities.rotation import (
    CAState,
    Leaf,
    Step,
    leaf_problem,
    leaf_problems,
    next_step,
    pod_certificates_wait,
    step_changes,
    steps_left,
)
from mtls_operator.pki import (
    CertificateAuthority,
    DistinguishedName,
    KeySpec,
    LeafRequest,
    Usage,
    certificates_to_pem,
    issue_leaf,
)

from support.authorities import make_ca
from support.clock import NOW

OLD = make_ca(common_name="Old CA")
NEW = make_ca(common_name="New CA")


def leaf_of(ca: CertificateAuthority) -> x509.Certificate:
    request = LeafRequest(
        Usage.SERVER, DistinguishedName(common_name="web"), lifetime=datetime.timedelta(days=1)
    )
    return issue_leaf(ca, request, KeySpec().generate().public_key(), NOW).certificate


SIGNED_BY_OLD, SIGNED_BY_NEW = leaf_of(OLD), leaf_of(NEW)
BOTH = (OLD.certificate, NEW.certificate)


@pytest.mark.parametrize(
    ("signing", "bundle", "step"),
    [
        (OLD, (OLD.certificate,), Step.TRUST_NEW),
        (OLD, BOTH, Step.SIGN_WITH_NEW),
        (OLD, (NEW.certificate, OLD.certificate), Step.SIGN_WITH_NEW),
        (NEW, BOTH, Step.DROP_OLD),
        (NEW, (NEW.certificate,), Step.DONE),
        # Edited by hand halfway: the new CA signs, but the bundle lacks it.
        (NEW, (OLD.certificate,), Step.DROP_OLD),
    ],
    ids=["start", "trusted", "trusted-new-first", "signing", "done", "hand-edited"],
)
def test_the_step_is_read_from_the_secret(
    signing: CertificateAuthority, bundle: tuple[x509.Certificate, ...], step: Step
) -> None:
    state = CAState(signing.certificate, bundle)
    assert next_step(state, NEW.certificate, (NEW.certificate,)) is step


OLD_LEAF = Leaf("ns/web", True, (SIGNED_BY_OLD,), (OLD.certificate,))
TRUSTING = Leaf("ns/web", True, (SIGNED_BY_OLD,), BOTH)
REISSUED = Leaf("ns/web", True, (SIGNED_BY_NEW,), BOTH)
FINISHED = Leaf("ns/web", True, (SIGNED_BY_NEW,), (NEW.certificate,))


@pytest.mark.parametrize(
    ("leaf", "before", "problem"),
    [
        (OLD_LEAF, Step.TRUST_NEW, None),
        (Leaf("ns/web", False, (), ()), Step.TRUST_NEW, "not Ready"),
        (OLD_LEAF, Step.SIGN_WITH_NEW, "its ca.crt does not trust the new root yet"),
        (TRUSTING, Step.SIGN_WITH_NEW, None),
        (TRUSTING, Step.DROP_OLD, "not re-issued by the new CA yet"),
        (REISSUED, Step.DROP_OLD, None),
        (REISSUED, Step.DONE, "its ca.crt still trusts the old root"),
        (FINISHED, Step.DONE, None),
    ],
)
def test_a_leaf_is_ready_for_a_step_only_where_that_step_needs_it(
    leaf: Leaf, before: Step, problem: str | None
) -> None:
    assert leaf_problem(leaf, before, (NEW.certificate,), NOW) == problem


def test_leaf_problems_name_each_leaf_not_ready() -> None:
    not_ready = Leaf("ns/api", False, (), ())
    assert leaf_problems([TRUSTING, not_ready], Step.SIGN_WITH_NEW, (NEW.certificate,), NOW) == [
        "ns/api: not Ready"
    ]


@pytest.mark.parametrize(
    ("step", "left"),
    [
        (Step.TRUST_NEW, [Step.TRUST_NEW, Step.SIGN_WITH_NEW, Step.DROP_OLD]),
        (Step.DROP_OLD, [Step.DROP_OLD]),
        (Step.DONE, []),
    ],
)
def test_steps_left_run_from_the_current_one(step: Step, left: list[Step]) -> None:
    assert steps_left(step) == left


@pytest.mark.parametrize(
    ("state", "step", "changes"),
    [
        (
            CAState(OLD.certificate, (OLD.certificate,)),
            Step.TRUST_NEW,
            {"ca.crt": certificates_to_pem(BOTH)},
        ),
        # A root trusted already is not added twice.
        (CAState(OLD.certificate, BOTH), Step.TRUST_NEW, {"ca.crt": certificates_to_pem(BOTH)}),
        (
            CAState(OLD.certificate, BOTH),
            Step.SIGN_WITH_NEW,
            {"tls.crt": certificates_to_pem([NEW.certificate]), "tls.key": b"new key"},
        ),
        (CAState(NEW.certificate, BOTH), Step.DROP_OLD, {"ca.crt": NEW.trust_bundle_pem}),
    ],
    ids=["trust-new", "trust-new-again", "sign-with-new", "drop-old"],
)
def test_each_step_writes_its_own_part_of_the_secret(
    state: CAState, step: Step, changes: dict[str, bytes]
) -> None:
    assert step_changes(state, step, NEW, b"new key") == changes


HOUR = datetime.timedelta(hours=1)


@pytest.mark.parametrize(
    ("signed_at", "wait"),
    [
        (NOW, 24 * HOUR),
        (NOW - 23 * HOUR, HOUR),
        (NOW - 25 * HOUR, datetime.timedelta(0)),
        # Step 2 done by hand: no record of when, so it counts from now.
        (None, 24 * HOUR),
    ],
    ids=["just-signed", "an-hour-left", "long-ago", "unrecorded"],
)
def test_the_old_root_is_trusted_while_pod_certificates_of_the_old_key_live(
    signed_at: datetime.datetime | None, wait: datetime.timedelta
) -> None:
    assert pod_certificates_wait(signed_at, 24 * HOUR, NOW) == wait
