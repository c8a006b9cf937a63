"""The day-2 commands that talk to a cluster: `status`, `renew` and
`inspect secret` (also as `kubectl mtls ...`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.outputs import CA_CRT, TLS_CRT
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import RENEW_REQUESTED_ANNOTATION, certificates_path
from mtls_operator.api.secret_data import decode_data
from mtls_operator.api.timestamps import parse_timestamp
from mtls_operator.api.workloads import WorkloadKind, workloads_path
from mtls_operator.cli.errors import CommandError
from mtls_operator.cli.output import MACHINE_FORMATS, TABLE, WIDE, dump, table
from mtls_operator.cli.report import EXIT_CHAIN_INVALID, render_chain_report
from mtls_operator.pki import CertificateLoadError, inspect_chain, load_certificates
from mtls_operator.policy.renewal import renewal_request
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.kubeconfig import NO_CREDENTIALS, KubeconfigChoice, current_namespace
from mtls_operator.runtime.login import kubeconfig_login
from mtls_operator.workloads.mounts import follows_reloads, mounted

STATUS_FORMATS = (TABLE, WIDE, *MACHINE_FORMATS)
# Headings of `status` and the row keys under them; `-o wide` adds WIDE_COLUMNS.
COLUMNS = {
    "NAME": "name",
    "READY": "ready",
    "REASON": "reason",
    "SECRET": "secret",
    "EXPIRES": "notAfter",
    "DAYS LEFT": "daysLeft",
    "RENEWAL": "renewalTime",
}
WIDE_COLUMNS = {
    "SERIAL": "serialNumber",
    "REVISION": "revision",
    "WORKLOADS": "workloads",
    "MESSAGE": "message",
}
# In WORKLOADS when the user may not list the workloads.
UNKNOWN = "?"


def add_cluster_arguments(parser: argparse.ArgumentParser, *, all_allowed: bool) -> None:
    """kubectl's own flags for where to look, as a kubectl plugin takes them."""
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (default: its current context)"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", metavar="NS", help="namespace (default: the context's namespace)"
    )
    if all_allowed:
        scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def kubeconfig_choice(args: argparse.Namespace) -> KubeconfigChoice:
    return KubeconfigChoice(args.kubeconfig, args.context)


def status(args: argparse.Namespace) -> int:
    return run_with_kube(_status, args)


def renew(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.all):
        raise CommandError("give a certificate NAME or --all")
    return run_with_kube(_renew, args)


def inspect_secret(args: argparse.Namespace) -> int:
    return run_with_kube(_inspect_secret, args)


def run_with_kube(
    command: Callable[[Kube, argparse.Namespace], Awaitable[int]], args: argparse.Namespace
) -> int:
    async def main() -> int:
        kube = Kube(kubeconfig_login(kubeconfig_choice(args)))
        try:
            return await command(kube, args)
        finally:
            await kube.close()

    try:
        return asyncio.run(main())
    except ApiError as err:
        if err.reason == NO_CREDENTIALS:
            raise CommandError(err.message) from None
        if err.status == 0:
            raise CommandError(f"cannot reach the cluster: {err.message}") from None
        raise CommandError(
            f"the API server refused: {err.status} {err.reason}: {err.message}"
        ) from None


def namespace_of(args: argparse.Namespace) -> str | None:
    if getattr(args, "all_namespaces", False):
        return None
    return args.namespace or current_namespace(kubeconfig_choice(args))


async def _status(kube: Kube, args: argparse.Namespace) -> int:
    namespace = namespace_of(args)
    items, _ = await kube.list(certificates_path(namespace))
    now = datetime.datetime.now(datetime.UTC)
    rows = [_status_row(item, now) for item in sorted(items, key=_sort_key)]
    if args.output == WIDE and rows:
        followers = await _followers(kube, namespace)
        for row in rows:
            if followers is None:
                row["workloads"] = UNKNOWN
            else:
                found = followers.get((row["namespace"], row["secret"]), [])
                row["workloads"] = ",".join(sorted(found)) or None
    if args.output in MACHINE_FORMATS:
        print(dump(rows, args.output))
        return 0
    if not rows:
        where = "any namespace" if namespace is None else f"namespace {namespace}"
        print(f"No MtlsCertificates in {where}.")
        return 0
    columns = {"NAMESPACE": "namespace"} if namespace is None else {}
    columns |= COLUMNS | (WIDE_COLUMNS if args.output == WIDE else {})
    print(table(rows, columns))
    return 0


async def _followers(kube: Kube, namespace: str | None) -> dict[tuple[str, str], list[str]] | None:
    """The workloads that follow reloads (mtls.dev/reload), as KIND/NAME, by
    the (namespace, name) of each Secret their pods mount; None, with a
    line on stderr, when the user may not list them."""
    found: dict[tuple[str, str], list[str]] = {}
    for kind in WorkloadKind:
        try:
            items, _ = await kube.list(workloads_path(kind, namespace))
        except ApiError as err:
            if err.status != HTTPStatus.FORBIDDEN:
                raise
            print(f"WORKLOADS unknown: {err.message}", file=sys.stderr)
            return None
        for item in items:
            if not follows_reloads(item):
                continue
            metadata = item.get("metadata") or {}
            for secret in mounted(item).secrets:
                key = (str(metadata.get("namespace", "")), secret)
                found.setdefault(key, []).append(f"{kind.value}/{metadata.get('name', '')}")
    return found


def _sort_key(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return (metadata.get("namespace", ""), metadata.get("name", ""))


def _status_row(item: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    metadata, spec, status = (
        item.get("metadata") or {},
        item.get("spec") or {},
        item.get("status") or {},
    )
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    not_after = parse_timestamp(status.get("notAfter"))
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "ready": ready.get("status", "Unknown"),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
        "secret": spec.get("secretName"),
        "notAfter": status.get("notAfter"),
        "daysLeft": round((not_after - now).total_seconds() / 86400, 1) if not_after else None,
        "renewalTime": status.get("renewalTime"),
        "serialNumber": status.get("serialNumber"),
        "revision": status.get("revision"),
    }


async def _renew(kube: Kube, args: argparse.Namespace) -> int:
    namespace = namespace_of(args)
    if args.all:
        items, _ = await kube.list(certificates_path(namespace))
        targets = [
            (
                (i.get("metadata") or {}).get("namespace", ""),
                (i.get("metadata") or {}).get("name", ""),
            )
            for i in items
        ]
    else:
        if namespace is None:
            raise CommandError("renew NAME needs a namespace, not --all-namespaces")
        targets = [(namespace, args.name)]
    # A new value each time: the operator honours each distinct value once.
    requested = renewal_request(datetime.datetime.now(datetime.UTC))
    for target_namespace, name in targets:
        try:
            await kube.merge_patch(
                certificates_path(target_namespace, name),
                {"metadata": {"annotations": {RENEW_REQUESTED_ANNOTATION: requested}}},
            )
        except ApiError as err:
            if err.not_found:
                raise CommandError(f"MtlsCertificate {target_namespace}/{name} not found") from None
            raise
        print(f"renewal requested for {target_namespace}/{name}")
    if not targets:
        print("No MtlsCertificates to renew.")
    return 0


async def _inspect_secret(kube: Kube, args: argparse.Namespace) -> int:
    namespace = namespace_of(args) or "default"
    body = await kube.get(secrets_path(namespace, args.name))
    if body is None:
        raise CommandError(f"Secret {namespace}/{args.name} not found")
    data = decode_data(body.get("data"))
    if not data.get(TLS_CRT):
        raise CommandError(f"Secret {namespace}/{args.name} has no {TLS_CRT}")
    try:
        chain = load_certificates(data[TLS_CRT])
        anchors = load_certificates(data[CA_CRT]) if data.get(CA_CRT) else None
    except CertificateLoadError as err:
        raise CommandError(f"Secret {namespace}/{args.name}: {err}") from None
    report = inspect_chain(chain, anchors, datetime.datetime.now(datetime.UTC))
    facts = read_secret(body)
    key_state = facts.problem or (
        "tls.key matches tls.crt" if facts.key_matches else "tls.key does NOT match tls.crt"
    )
    if args.output in MACHINE_FORMATS:
        found = {**report.to_json(), "secret": f"{namespace}/{args.name}", "key": key_state}
        print(dump(found, args.output))
    else:
        print(f"Secret {namespace}/{args.name} ({body.get('type', '')}): {key_state}")
        print(render_chain_report(report).replace("the given CA bundle", f"the Secret's {CA_CRT}"))
    healthy = report.chain_valid is not False and facts.problem is None and facts.key_matches
    return 0 if healthy else EXIT_CHAIN_INVALID
