"""The three steps of docs/ca-rotation.md as pure decisions: which step a CA
Secret is at (so that a rotation resumes wherever it stopped), and whether a
leaf is where the next step needs it to be."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from mtls_operator.pki import chain_problem
from mtls_operator.pki.certs import fingerprint_sha256


class Step(enum.IntEnum):
    TRUST_NEW = 1  # ca.crt: old + new roots
    SIGN_WITH_NEW = 2  # tls.crt/tls.key: the new CA
    DROP_OLD = 3  # ca.crt: the new roots alone
    DONE = 4


# What each step does, as the command prints it.
DOING = {
    Step.TRUST_NEW: "add the new root to ca.crt (old and new trusted)",
    Step.SIGN_WITH_NEW: "sign with the new CA: tls.crt and tls.key replaced, leaves re-issued",
    Step.DROP_OLD: "stop trusting the old root: ca.crt holds the new root alone",
}


@dataclass(frozen=True)
class CAState:
    """What the CA Secret holds now."""

    signing: x509.Certificate
    bundle: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class Leaf:
    """One certificate signed by the CA, as its Secret and status show it."""

    name: str  # namespace/name
    ready: bool
    chain: tuple[x509.Certificate, ...]  # tls.crt
    bundle: tuple[x509.Certificate, ...]  # ca.crt


def _prints(certificates: Sequence[x509.Certificate]) -> list[str]:
    return [fingerprint_sha256(c) for c in certificates]


def next_step(
    state: CAState, new_signing: x509.Certificate, new_roots: Sequence[x509.Certificate]
) -> Step:
    """The step to do next, read from the Secret alone, so that a rotation
    stopped anywhere (or edited by hand halfway) goes on from where it is."""
    new = _prints(new_roots)
    if fingerprint_sha256(state.signing) == fingerprint_sha256(new_signing):
        return Step.DONE if _prints(state.bundle) == new else Step.DROP_OLD
    return Step.SIGN_WITH_NEW if set(new) <= set(_prints(state.bundle)) else Step.TRUST_NEW


def leaf_problem(
    leaf: Leaf, before: Step, new_roots: Sequence[x509.Certificate], now: datetime.datetime
) -> str | None:
    """Why `leaf` is not yet ready for step `before` (DONE: for the end)."""
    if not leaf.ready:
        return "not Ready"
    new = _prints(new_roots)
    if before >= Step.SIGN_WITH_NEW and not set(new) <= set(_prints(leaf.bundle)):
        return "its ca.crt does not trust the new root yet"
    if before >= Step.DROP_OLD and chain_problem(leaf.chain, new_roots, now) is not None:
        return "not re-issued by the new CA yet"
    if before is Step.DONE and _prints(leaf.bundle) != new:
        return "its ca.crt still trusts the old root"
    return None
