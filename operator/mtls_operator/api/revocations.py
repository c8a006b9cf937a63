"""Revocations as they are asked for and kept.

A tenant asks by annotating its MtlsCertificate with the serial it holds
now (the same `patch mtlscertificates` right as asking for a renewal); the
operator records it. The record of each CA is one ConfigMap beside the CA's
Secret, `<CA Secret>-revocations`: an entry per revoked serial, and the CA's
current CRL (`ca.crl`, PEM). It lives in etcd, so a restart, a failover or
the loss of the operator's memory keeps it, and a backup of the cluster
keeps it too. Cluster administrators may add entries themselves
(`mtls-operator revoke --serial`): an entry is one key, so a merge patch
that adds it never overwrites another writer's.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL, MANAGER
from mtls_operator.api.timestamps import format_timestamp, parse_timestamp
from mtls_operator.pki.crl import MAX_TWENTY_OCTETS, Revocation, RevocationReason

# On an MtlsCertificate: revoke this serial (hex, as status.serialNumber
# shows it) if it is the certificate's own, then re-issue with a new key.
REVOKE_SERIAL_ANNOTATION = "mtls.dev/revoke-serial"
REVOKE_REASON_ANNOTATION = "mtls.dev/revoke-reason"

STORE_SUFFIX = "-revocations"
# Chooses the records among ConfigMaps (a label, so that one list finds them).
STORE_LABEL = "mtls.dev/revocations"
STORE_LABEL_VALUE = "true"
STORE_SELECTOR = {
    "labelSelector": f"{MANAGED_BY_LABEL}={MANAGER},{STORE_LABEL}={STORE_LABEL_VALUE}"
}
CRL_KEY = "ca.crl"
ENTRY_PREFIX = "serial-"
# A ConfigMap name is a DNS subdomain.
_MAX_NAME = 253


class RevocationRequestError(ValueError):
    """A revocation asked for in a form that cannot be taken."""


def store_name(ca_secret_name: str) -> str:
    name = ca_secret_name + STORE_SUFFIX
    if len(name) > _MAX_NAME:
        raise RevocationRequestError(
            f"the CA Secret name {ca_secret_name!r} is too long to name its revocations "
            f"ConfigMap {name!r} (at most {_MAX_NAME} characters)"
        )
    return name


def crl_distribution_point(base_url: str | None, ca_namespace: str, ca_name: str) -> str | None:
    """Where the operator serves a CA's CRL (DER) under `--crl-url`; None
    without one."""
    if base_url is None:
        return None
    return f"{base_url.rstrip('/')}/crl/{ca_namespace}/{ca_name}.crl"


def parse_serial(text: str, field: str = "serial") -> int:
    """A serial as status.serialNumber and openssl print it: hex, with or
    without colons and a 0x prefix."""
    cleaned = text.strip().lower().replace(":", "").removeprefix("0x")
    try:
        serial = int(cleaned, 16)
    except ValueError:
        raise RevocationRequestError(
            f"{field} {text!r} is not a hexadecimal serial number"
        ) from None
    if not 0 < serial <= MAX_TWENTY_OCTETS:
        raise RevocationRequestError(
            f"{field} {text!r} is not a serial number (positive, at most 20 octets)"
        )
    return serial


def parse_reason(text: str | None, field: str = "reason") -> RevocationReason:
    if not text:
        return RevocationReason.UNSPECIFIED
    try:
        return RevocationReason(text)
    except ValueError:
        choices = ", ".join(r.value for r in RevocationReason)
        raise RevocationRequestError(f"{field} {text!r} must be one of {choices}") from None


@dataclass(frozen=True)
class RevokeRequest:
    """What an MtlsCertificate's annotations ask to revoke."""

    serial_number: int
    reason: RevocationReason


def revoke_request(annotations: Mapping[str, str]) -> RevokeRequest | None:
    """None when nothing is asked; RevocationRequestError when the ask is
    malformed (it names the annotation and the value)."""
    serial = annotations.get(REVOKE_SERIAL_ANNOTATION)
    if not serial:
        return None
    return RevokeRequest(
        parse_serial(serial, REVOKE_SERIAL_ANNOTATION),
        parse_reason(annotations.get(REVOKE_REASON_ANNOTATION), REVOKE_REASON_ANNOTATION),
    )


@dataclass(frozen=True)
class StoredRevocation:
    revocation: Revocation
    # "namespace/name" of the MtlsCertificate it was asked for; "" by serial.
    certificate: str = ""


@dataclass(frozen=True)
class RevocationStore:
    """One CA's revocations ConfigMap as last seen."""

    namespace: str
    name: str
    resource_version: str
    managed: bool
    entries: Mapping[int, StoredRevocation]
    crl_pem: str
    # The data key each entry is under (a hand-written one may differ from
    # entry_key's spelling), to remove it when the entry goes.
    entry_keys: Mapping[int, str] = field(default_factory=dict)
    # Entries that could not be read: one line each, naming the key.
    problems: tuple[str, ...] = ()

    def holds(self, serial_number: int) -> bool:
        return serial_number in self.entries


def entry_key(serial_number: int) -> str:
    return f"{ENTRY_PREFIX}{serial_number:x}"


def entry_value(entry: StoredRevocation) -> str:
    revocation = entry.revocation
    value: dict[str, str] = {
        "revokedAt": format_timestamp(revocation.revoked_at),
        "reason": revocation.reason.value,
        "notAfter": format_timestamp(revocation.not_after),
    }
    if entry.certificate:
        value["certificate"] = entry.certificate
    return json.dumps(value, sort_keys=True)


def read_store(body: Mapping[str, Any]) -> RevocationStore:
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    data = body.get("data") or {}
    entries: dict[int, StoredRevocation] = {}
    keys: dict[int, str] = {}
    problems = []
    for key, value in data.items():
        if not key.startswith(ENTRY_PREFIX):
            continue
        try:
            entry = _read_entry(key, str(value))
        except (RevocationRequestError, ValueError, TypeError) as err:
            problems.append(f"{key}: {err}")
            continue
        entries[entry.revocation.serial_number] = entry
        keys[entry.revocation.serial_number] = key
    return RevocationStore(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        managed=labels.get(MANAGED_BY_LABEL) == MANAGER,
        entries=entries,
        crl_pem=str(data.get(CRL_KEY) or ""),
        entry_keys=keys,
        problems=tuple(problems),
    )


def _read_entry(key: str, text: str) -> StoredRevocation:
    serial = parse_serial(key.removeprefix(ENTRY_PREFIX), "key")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    revoked_at = _timestamp(value.get("revokedAt"))
    not_after = _timestamp(value.get("notAfter"))
    if revoked_at is None or not_after is None:
        raise ValueError("revokedAt and notAfter must be RFC 3339 times")
    reason = parse_reason(value.get("reason"))
    return StoredRevocation(
        Revocation(serial, revoked_at, reason, not_after), str(value.get("certificate") or "")
    )


def _timestamp(value: object) -> datetime.datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None


def store_labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGER, STORE_LABEL: STORE_LABEL_VALUE}


def store_body(namespace: str, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": store_labels()},
        "data": dict(data),
    }


def revoked_now(
    serial_number: int,
    reason: RevocationReason,
    not_after: datetime.datetime,
    now: datetime.datetime,
    certificate: str = "",
) -> StoredRevocation:
    return StoredRevocation(Revocation(serial_number, now, reason, not_after), certificate)
