"""`revoke`: stop a certificate whose key is out from being accepted.

By name, as a tenant: the serial the MtlsCertificate holds now is asked
for in its annotations (the `patch mtlscertificates` right that renewing
needs); the operator records it, lists it in the CA's CRL and re-issues the
certificate with a new key. The command waits for the new certificate.

By serial, as a cluster administrator: for a certificate no longer tracked
(a deleted MtlsCertificate, a pod certificate, one renewed since), the entry
is written into the CA's revocations record directly.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time
from typing import Any

from mtls_operator.api.durations import parse_duration
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import certificates_path
from mtls_operator.api.revocations import (
    REVOKE_REASON_ANNOTATION,
    REVOKE_SERIAL_ANNOTATION,
    RevocationRequestError,
    parse_reason,
    parse_serial,
    revoked_now,
    store_name,
)
from mtls_operator.api.secret_data import decode_data
from mtls_operator.api.timestamps import parse_timestamp
from mtls_operator.authorities.layouts import complete_layout
from mtls_operator.authorities.store import CARef
from mtls_operator.cli.cluster import add_cluster_arguments, namespace_of, run_with_kube
from mtls_operator.cli.errors import CommandError
from mtls_operator.cli.parsers import add_command, examples
from mtls_operator.cli.settings import cluster_ca_ref
from mtls_operator.pki import CertificateLoadError, RevocationReason, load_certificates
from mtls_operator.pki.certs import not_after
from mtls_operator.revocations.store import ForeignStoreError, add_revocations
from mtls_operator.runtime.kube import Kube

DEFAULT_TIMEOUT = "60s"
POLL_SECONDS = 1.0


def add_revoke_command(commands: Any) -> None:
    revoke = add_command(
        commands,
        "revoke",
        "revoke a certificate: list it in its CA's CRL, and re-issue it with a new key",
        examples(
            "kubectl mtls revoke web -n shop --reason keyCompromise",
            "kubectl mtls revoke --serial 4f:1a:09 --reason keyCompromise",
            "kubectl mtls revoke --serial 4f1a09 --ca shop/shop-ca --not-after 2027-03-01T00:00Z",
        ),
    )
    revoke.add_argument(
        "name", nargs="?", metavar="NAME", help="the MtlsCertificate whose certificate to revoke"
    )
    revoke.add_argument(
        "--serial",
        metavar="HEX",
        help="revoke this serial instead (cluster administrators: it writes the CA's record)",
    )
    revoke.add_argument(
        "--reason",
        choices=[r.value for r in RevocationReason],
        default=RevocationReason.UNSPECIFIED.value,
        help="the CRL entry's reason code (default: unspecified)",
    )
    revoke.add_argument(
        "--ca",
        metavar="NS/NAME",
        help="with --serial: the CA Secret that signed it (default: the cluster CA)",
    )
    revoke.add_argument(
        "--not-after",
        metavar="TIME",
        help="with --serial: the certificate's notAfter (RFC 3339), after which its entry "
        "may leave the CRL (default: the CA's own notAfter)",
    )
    revoke.add_argument(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help=f"by NAME: how long to wait for the new certificate (default: {DEFAULT_TIMEOUT}; "
        "0s: do not wait)",
    )
    add_cluster_arguments(revoke, all_allowed=False)
    revoke.set_defaults(command=revoke_command)


def revoke_command(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.serial):
        raise CommandError("give a certificate NAME or --serial")
    if args.name and (args.ca or args.not_after):
        raise CommandError("--ca and --not-after go with --serial, not NAME")
    try:
        parse_duration(args.timeout)
    except ValueError as err:
        raise CommandError(f"--timeout {args.timeout!r}: {err}") from None
    return run_with_kube(_by_serial if args.serial else _by_name, args)


async def _by_name(kube: Kube, args: argparse.Namespace) -> int:
    namespace = namespace_of(args) or "default"
    path = certificates_path(namespace, args.name)
    certificate = await kube.get(path)
    if certificate is None:
        raise CommandError(f"MtlsCertificate {namespace}/{args.name} not found")
    serial = _status(certificate).get("serialNumber")
    if not serial:
        raise CommandError(
            f"MtlsCertificate {namespace}/{args.name} holds no certificate yet "
            "(status.serialNumber is empty): there is nothing to revoke"
        )
    annotations = {REVOKE_SERIAL_ANNOTATION: serial, REVOKE_REASON_ANNOTATION: args.reason}
    await kube.merge_patch(path, {"metadata": {"annotations": annotations}})
    print(f"revocation of certificate {serial} ({args.reason}) asked for {namespace}/{args.name}")
    timeout = parse_duration(args.timeout).total_seconds()
    if timeout <= 0:
        return 0
    reissued = await _wait_for_new_serial(kube, path, serial, timeout)
    if reissued is None:
        raise CommandError(
            f"MtlsCertificate {namespace}/{args.name} was not re-issued within {args.timeout}: "
            f"see kubectl describe mtlscertificate {args.name} -n {namespace}"
        )
    print(f"revoked {serial}; {namespace}/{args.name} now holds certificate {reissued}")
    return 0


async def _wait_for_new_serial(kube: Kube, path: str, serial: str, timeout: float) -> str | None:
    """The new serial once the operator re-issued the certificate, which it
    does only after the revocation is recorded; None at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        current = await kube.get(path)
        if current is None:
            raise CommandError(f"{path}: the MtlsCertificate was deleted meanwhile")
        now_held = _status(current).get("serialNumber")
        if now_held and now_held != serial:
            return str(now_held)
    return None


async def _by_serial(kube: Kube, args: argparse.Namespace) -> int:
    try:
        serial = parse_serial(args.serial, "--serial")
        reason = parse_reason(args.reason, "--reason")
        ca = cluster_ca_ref(args.ca, "--ca")
    except (RevocationRequestError, ValueError) as err:
        raise CommandError(str(err)) from None
    expires = await _not_after(kube, ca, args.not_after)
    entry = revoked_now(serial, reason, expires, datetime.datetime.now(datetime.UTC))
    try:
        await add_revocations(kube, ca, [entry])
    except ForeignStoreError as err:
        raise CommandError(str(err)) from None
    print(
        f"revoked serial {serial:x} ({reason.value}) in ConfigMap "
        f"{ca.namespace}/{store_name(ca.name)}; the operator signs CA {ca}'s next CRL with it"
    )
    return 0


async def _not_after(kube: Kube, ca: CARef, given: str | None) -> datetime.datetime:
    if given:
        parsed = parse_timestamp(given)
        if parsed is None:
            raise CommandError(f"--not-after {given!r} is not an RFC 3339 time")
        return parsed
    body = await kube.get(secrets_path(ca.namespace, ca.name))
    if body is None:
        raise CommandError(f"CA Secret {ca} not found (name it with --ca NS/NAME)")
    data = decode_data(body.get("data"))
    # The CA's certificate, as the operator finds it: no revoked leaf outlives it.
    layout = complete_layout(data.get)
    if layout is not None:
        try:
            return not_after(load_certificates(data[layout[0]])[0])
        except (CertificateLoadError, IndexError):
            pass
    raise CommandError(
        f"CA Secret {ca} holds no readable CA certificate: give the certificate's --not-after"
    )


def _status(body: dict[str, Any]) -> dict[str, Any]:
    status = body.get("status")
    return status if isinstance(status, dict) else {}
