"""The three steps of docs/ca-rotation.md as pure decisions: which step a CA
Secret is at (so that a rotation resumes wherever it stopped), what each
step writes into it, whether a leaf is where the next step needs it to be,
and how long pod certificates signed by the old key may still live.
`mtls-operator ca rotate` reads the cluster, calls these, and writes."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from mtls_operator.api.outputs import CA_CRT, TLS_CRT, TLS_KEY
from mtls_operator.pki import CertificateAuthority, certificates_to_pem, chain_problem
from mtls_operator.pki.certs import fingerprint_sha256

# The CA Secret layout a rotation edits (beside ca.crt, the trust bundle);
# other layouts are rotated by hand.
ROTATED_LAYOUT = (TLS_CRT, TLS_KEY)
# When step 2 was done: pod certificates of the cluster CA are renewed by the
# kubelets within their lifetime of it, and step 3 waits for that.
SIGNED_AT_ANNOTATION = "mtls.dev/rotation-signed-at"


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


def steps_left(step: Step) -> list[Step]:
    """The steps from `step` on, in order (none once DONE)."""
    return [left for left in Step if step <= left < Step.DONE]


def step_changes(
    state: CAState, step: Step, new: CertificateAuthority, new_key: bytes
) -> dict[str, bytes]:
    """What `step` writes into the CA Secret's data: old and new roots
    trusted, then the new CA signing, then the new roots alone."""
    if step is Step.TRUST_NEW:
        known = set(_prints(state.bundle))
        added = [c for c in new.trust_bundle if fingerprint_sha256(c) not in known]
        return {CA_CRT: certificates_to_pem([*state.bundle, *added])}
    if step is Step.SIGN_WITH_NEW:
        signing = certificates_to_pem([new.certificate, *new.intermediates])
        return {TLS_CRT: signing, TLS_KEY: new_key}
    return {CA_CRT: new.trust_bundle_pem}


def leaf_problems(
    leaves: Sequence[Leaf],
    before: Step,
    new_roots: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> list[str]:
    """`namespace/name: why` for each leaf not yet ready for step `before`."""
    found = []
    for leaf in leaves:
        problem = leaf_problem(leaf, before, new_roots, now)
        if problem is not None:
            found.append(f"{leaf.name}: {problem}")
    return found


def pod_certificates_wait(
    signed_at: datetime.datetime | None, max_duration: datetime.timedelta, now: datetime.datetime
) -> datetime.timedelta:
    """How long the old root must stay trusted for the pod certificates
    signed by the old key: they live until the kubelets renew them, at most
    `max_duration` after step 2. A step 2 done by hand (no record of when)
    counts from now."""
    left = (signed_at or now) + max_duration - now
    return max(left, datetime.timedelta(0))
