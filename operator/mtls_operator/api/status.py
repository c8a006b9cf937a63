"""The MtlsCertificate status: the Ready condition and the facts of the
issued certificate, laid out so that `kubectl wait --for=condition=Ready`
and kstatus (Flux, Argo CD) read it correctly."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from typing import Any

from mtls_operator.api.managed_secret import LeafFacts
from mtls_operator.api.timestamps import format_timestamp

READY = "Ready"
# kstatus (Flux, Argo CD) reads Stalled=True as "failed, waiting for a
# human" and Reconciling=True as "in progress, the controller is on it".
STALLED = "Stalled"
RECONCILING = "Reconciling"


class Reason(enum.StrEnum):
    """Reasons of the Ready condition."""

    # Ready=True.
    ISSUED = "Issued"
    RENEWED = "Renewed"
    REISSUED = "Reissued"
    # Ready=False.
    INVALID_SPEC = "InvalidSpec"
    CA_NOT_FOUND = "CANotFound"
    CA_INVALID = "CAInvalid"
    SECRET_CONFLICT = "SecretConflict"
    ISSUANCE_FAILED = "IssuanceFailed"
    EXPIRED = "Expired"
    POLICY_DENIED = "PolicyDenied"


# The failures that retrying cannot fix: Stalled=True, so GitOps tools stop waiting.
STALLED_REASONS = frozenset(
    {Reason.INVALID_SPEC, Reason.CA_INVALID, Reason.SECRET_CONFLICT, Reason.POLICY_DENIED}
)
# The failures the operator works through by itself (a CA on its way, an
# issuance it retries): Reconciling=True, so GitOps tools keep waiting.
RECONCILING_REASONS = frozenset({Reason.CA_NOT_FOUND, Reason.ISSUANCE_FAILED, Reason.EXPIRED})


def condition(
    previous: Mapping[str, Any],
    *,
    kind: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when status moves."""
    old = _find(previous, kind) or {}
    changed = old.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": format_timestamp(now)
        if changed
        else old.get("lastTransitionTime", format_timestamp(now)),
    }


def conditions(
    previous: Mapping[str, Any],
    statuses: Mapping[str, str],
    *,
    reason: str,
    message: str,
    generation: int,
    now: datetime.datetime,
) -> list[dict[str, Any]]:
    """One condition per type in `statuses` (type -> status), all for the same reason."""
    return [
        condition(
            previous,
            kind=kind,
            status=status,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
        for kind, status in statuses.items()
    ]


def ready_status(
    previous: Mapping[str, Any],
    *,
    generation: int,
    reason: str,
    message: str,
    leaf: LeafFacts,
    renewal: datetime.datetime,
    issuer: str,
    revision: int,
    now: datetime.datetime,
) -> dict[str, Any]:
    return {
        "conditions": conditions(
            previous,
            {READY: "True"},
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        ),
        "observedGeneration": generation,
        "notBefore": format_timestamp(leaf.not_before),
        "notAfter": format_timestamp(leaf.not_after),
        "renewalTime": format_timestamp(renewal),
        "serialNumber": leaf.serial_number,
        "fingerprintSHA256": leaf.fingerprint_sha256,
        "issuer": issuer,
        "revision": revision,
        "lastFailureTime": None,
        "failedIssuanceAttempts": 0,
    }


def failed_status(
    previous: Mapping[str, Any],
    *,
    generation: int,
    reason: str,
    message: str,
    now: datetime.datetime,
    attempt_failed: bool,
) -> dict[str, Any]:
    """Ready=False, keeping the facts of the certificate still in the Secret.
    `attempt_failed` counts an issuance attempt that was made and failed."""
    statuses = {READY: "False"}
    if reason in STALLED_REASONS:
        statuses[STALLED] = "True"
    elif reason in RECONCILING_REASONS:
        statuses[RECONCILING] = "True"
    attempts = int(previous.get("failedIssuanceAttempts") or 0)
    status = {
        **previous,
        "conditions": conditions(
            previous, statuses, reason=reason, message=message, generation=generation, now=now
        ),
        "observedGeneration": generation,
    }
    if attempt_failed:
        status["failedIssuanceAttempts"] = attempts + 1
        status["lastFailureTime"] = format_timestamp(now)
    return status


def ready_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return _find(status, READY)


def same_status(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether writing `wanted` would change anything."""
    for key, value in wanted.items():
        if key == "conditions":
            continue
        if current.get(key) != value:
            return False
    current_conditions = {c.get("type"): c for c in current.get("conditions") or []}
    wanted_conditions = {c["type"]: c for c in wanted.get("conditions") or []}
    if current_conditions.keys() != wanted_conditions.keys():
        return False
    return all(
        {k: v for k, v in current_conditions[kind].items() if k != "lastTransitionTime"}
        == {k: v for k, v in wanted_conditions[kind].items() if k != "lastTransitionTime"}
        for kind in wanted_conditions
    )


def _find(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for item in status.get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


# --- MtlsPolicy. ---

# A policy that selects every namespace of a large cluster lists the first ones.
MAX_LISTED_NAMESPACES = 100
POLICY_VALID = "Valid"
# Valid, but some entries grant nothing (see mtls_policy.PolicySpec.ignored).
POLICY_ENTRIES_IGNORED = "EntriesIgnored"
# Entries named in the message; the rest are counted.
MAX_LISTED_ENTRIES = 5


def policy_status(
    previous: Mapping[str, Any],
    *,
    generation: int,
    error: str | None,
    selected: list[str],
    now: datetime.datetime,
    ignored: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Ready=True with the namespaces it selects now (and the entries that
    grant nothing, if any), or Ready=False and Stalled=True with its
    validation error (it then grants nothing)."""
    if error is None:
        count = len(selected)
        reason, message = POLICY_VALID, f"selects {count} namespace{'s' if count != 1 else ''}"
        if ignored:
            reason = POLICY_ENTRIES_IGNORED
            message += "; these entries grant nothing: " + "; ".join(ignored[:MAX_LISTED_ENTRIES])
            if len(ignored) > MAX_LISTED_ENTRIES:
                message += f"; and {len(ignored) - MAX_LISTED_ENTRIES} more"
        statuses = {READY: "True"}
    else:
        reason, message = Reason.INVALID_SPEC, f"grants nothing until fixed: {error}"
        statuses = {READY: "False", STALLED: "True"}
    return {
        "observedGeneration": generation,
        "conditions": conditions(
            previous, statuses, reason=reason, message=message, generation=generation, now=now
        ),
        "selectedNamespaces": selected[:MAX_LISTED_NAMESPACES],
        "selectedNamespaceCount": len(selected),
    }
