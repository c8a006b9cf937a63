"""What a conversion gives back: converted documents with their notes,
refusals (one line each, naming the field and the value) and what was
skipped as not cert-manager's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CERT_MANAGER_GROUP = "cert-manager.io"
CERT_MANAGER_API_VERSION = f"{CERT_MANAGER_GROUP}/v1"
CERTIFICATE = "Certificate"
ISSUER = "Issuer"
CLUSTER_ISSUER = "ClusterIssuer"
ISSUER_KINDS = (ISSUER, CLUSTER_ISSUER)
# Shown instead of a value that may be a secret (a literal keystore password).
HIDDEN = "<hidden>"
_MAX_SHOWN = 100


def shown(value: object) -> str:
    """A value on one line, short enough to read in an error."""
    if value == HIDDEN:
        return HIDDEN
    try:
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


@dataclass(frozen=True)
class Refusal:
    """Something that cannot be converted: `source` names the object,
    `field` the path in it (such as spec.otherNames)."""

    source: str
    field: str
    value: object
    reason: str
    # The whole "field value: reason" text, when it comes ready-made (the
    # operator's own spec error, which has that shape already).
    detail: str | None = None

    def line(self) -> str:
        detail = self.detail or f"{self.field} {shown(self.value)}: {self.reason}"
        return f"{self.source}: {detail}"


@dataclass(frozen=True)
class Converted:
    """An MtlsCertificate (or, for an Issuer, no document: only notes on
    how to give the operator its CA) and what a reader should know about it."""

    source: str
    document: dict[str, Any] | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """An object that is not cert-manager's (a Namespace, a Secret), left out."""

    source: str
    reason: str


@dataclass
class Conversion:
    converted: list[Converted] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def describe(document: dict[str, Any]) -> str:
    """`Kind namespace/name` (or `Kind name`) as a user finds the object again."""
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name") or "(no name)"
    namespace = metadata.get("namespace")
    where = f"{namespace}/{name}" if namespace else str(name)
    return f"{document.get('kind') or '(no kind)'} {where}"
