"""Where a CA rotation stands, read from the CA Secret alone, and when a
leaf is ready for the next step: the decisions behind `ca rotate`."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from mtls_operator.authorities.rotation import CAState, Leaf, Step, leaf_problem, next_step
from mtls_operator.pki import (
    CertificateAuthority,
    DistinguishedName,
    KeySpec,
    LeafRequest,
    Usage,
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
