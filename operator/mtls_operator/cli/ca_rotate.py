"""`mtls-operator ca rotate`: the three steps of docs/ca-rotation.md done on
a CA Secret, each only when every certificate it signs is Ready and where
the next step needs it, with time between them for pods to reload. It reads
the step from the Secret, so a rotation that stopped goes on when run again."""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtls_operator.api.durations import format_duration, parse_duration
from mtls_operator.api.managed_secret import MANAGED_SELECTOR, SecretFacts, read_secret
from mtls_operator.api.outputs import CA_CRT, TLS_CRT, TLS_KEY
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import certificates_path
from mtls_operator.api.secret_data import decode_data
from mtls_operator.api.timestamps import format_timestamp, parse_timestamp
from mtls_operator.api.trust_bundles import (
    CONFIGMAP_SELECTOR,
    Published,
    configmaps_path,
    published,
)
from mtls_operator.api.workloads import RELOAD_ANNOTATION, WorkloadKind, workloads_path
from mtls_operator.app import OperatorConfig
from mtls_operator.authorities.layouts import ca_from_secret_data, complete_layout
from mtls_operator.authorities.rotation import (
    DOING,
    ROTATED_LAYOUT,
    SIGNED_AT_ANNOTATION,
    CAState,
    Leaf,
    Step,
    leaf_problems,
    next_step,
    pod_certificates_wait,
    step_changes,
    steps_left,
)
from mtls_operator.cli import cluster as cluster_cli
from mtls_operator.cli.errors import CommandError
from mtls_operator.cli.kubelet_sync import propagation
from mtls_operator.cli.parsers import PROGRAM, add_command, examples
from mtls_operator.cli.recipe import load_ca_dir
from mtls_operator.pki import (
    CAError,
    CertificateAuthority,
    is_encrypted_pem,
    load_certificates,
)
from mtls_operator.runtime.kube import Kube, Object, ObjectKey, object_key
from mtls_operator.workloads.content import roll_pending
from mtls_operator.workloads.mounts import mounted

POLL_SECONDS = 2.0


def add_rotate(ca_commands: Any) -> None:
    rotate = add_command(
        ca_commands,
        "rotate",
        "rotate a CA Secret to a new CA in the three steps of docs/ca-rotation.md",
        examples(
            f"{PROGRAM} ca init --out ./new-ca --common-name 'Shop CA 2027'",
            f"{PROGRAM} ca rotate shop-ca -n shop --new-ca-dir ./new-ca --dry-run",
            f"{PROGRAM} ca rotate shop-ca -n shop --new-ca-dir ./new-ca",
            f"{PROGRAM} ca rotate mtls-operator-ca -n mtls-operator --cluster-ca "
            "--new-ca-dir ./new-ca --settle 5m",
        ),
    )
    rotate.add_argument(
        "secret", metavar="SECRET", help="the CA Secret (tls.crt, tls.key and ca.crt)"
    )
    rotate.add_argument(
        "--new-ca-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the new CA, as `ca init` writes it (unencrypted key)",
    )
    rotate.add_argument(
        "--cluster-ca",
        action="store_true",
        help="SECRET is the operator's cluster CA: it signs the certificates of every "
        "namespace that name no caSecretName",
    )
    rotate.add_argument(
        "--settle",
        type=_duration,
        metavar="DURATION",
        help="time for pods to see a step's Secrets before the next step (default: what the "
        "nodes' kubelets take, syncFrequency x 1.5 + 10s, read from each node; a shorter "
        "one is refused)",
    )
    rotate.add_argument(
        "--timeout",
        type=_duration,
        default=datetime.timedelta(minutes=30),
        metavar="DURATION",
        help="how long to wait for the certificates at each step (default: 30m)",
    )
    rotate.add_argument(
        "--pod-cert-max-duration",
        type=_duration,
        default=OperatorConfig.pod_certificate_max_duration,
        metavar="DURATION",
        help="with --cluster-ca: the operator's --pod-cert-max-duration; step 3 waits that "
        "long after step 2, for the kubelets to renew pod certificates (default: "
        f"{format_duration(OperatorConfig.pod_certificate_max_duration)})",
    )
    rotate.add_argument(
        "--dry-run", action="store_true", help="print the steps left, and change nothing"
    )
    cluster_cli.add_cluster_arguments(rotate, all_allowed=False)
    rotate.set_defaults(command=lambda args: cluster_cli.run_with_kube(_rotate, args))


async def _settle(kube: Kube, asked: datetime.timedelta | None) -> datetime.timedelta:
    """The wait between steps: at least what the kubelets take to bring a Secret's change
    into the pods; a shorter one would start a step before pods saw the last."""
    needed = await propagation(kube)
    if asked is None:
        print(f"pods see a Secret's change within {format_duration(needed.bound)}: {needed.how}")
        return needed.bound
    if asked < needed.bound:
        raise CommandError(
            f"--settle {format_duration(asked)} is shorter than the "
            f"{format_duration(needed.bound)} pods take to see a Secret's change "
            f"({needed.how}): a step would start before pods saw the last"
        )
    return asked


def _duration(text: str) -> datetime.timedelta:
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    if value < datetime.timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


async def _rotate(kube: Kube, args: argparse.Namespace) -> int:
    namespace = cluster_cli.namespace_of(args) or "default"
    new, new_key = _new_ca(args.new_ca_dir)
    # A plan waits for nothing; a rotation, for the pods to see each step.
    settle = None if args.dry_run else await _settle(kube, args.settle)
    if not args.dry_run:
        # The reads each step waits on, tried before anything is written: a
        # user who may not list workloads learns it before step 1, not after.
        await _pending_rolls(kube, args, namespace)
    where = f"{namespace}/{args.secret}"
    while True:
        secret = await kube.get(secrets_path(namespace, args.secret))
        if secret is None:
            raise CommandError(f"CA Secret {where} not found")
        state = _state(secret, where)
        step = next_step(state, new.certificate, new.trust_bundle)
        if args.dry_run:
            return await _print_plan(kube, args, namespace, step, new)
        await _wait_for_leaves(kube, args, namespace, step, new)
        # The kubelets refresh the files while the workloads that cannot
        # reload are rolled: the pods see the last step either way.
        settled = _now() + (settle.total_seconds() if settle else 0.0)
        if step is not Step.TRUST_NEW:
            await _wait_for_rolls(kube, args, namespace, step)
        if step is Step.DONE:
            print(f"{where} is rotated: it signs with, and trusts only, the new CA")
            return 0
        if step is Step.DROP_OLD and args.cluster_ca:
            await _wait_for_pod_certificates(secret, args.pod_cert_max_duration)
        if step is not Step.TRUST_NEW and (left := settled - _now()) > 0:
            shown = format_duration(datetime.timedelta(seconds=round(left)))
            print(f"waiting {shown} more for pods to reload their Secrets")
            await asyncio.sleep(left)
        await kube.merge_patch(
            secrets_path(namespace, args.secret), _patch(secret, state, step, new, new_key)
        )
        print(f"step {step.value} of 3 done: {DOING[step]}")


def _new_ca(directory: Path) -> tuple[CertificateAuthority, bytes]:
    """The new CA and its key file's bytes, written to the Secret as they are."""
    layout = complete_layout(lambda name: _read(directory / name))
    if layout is not None and is_encrypted_pem(_read(directory / layout[1]) or b""):
        raise CommandError(
            f"{directory / layout[1]} is encrypted: ca rotate writes the key into the Secret "
            "as it is; give an unencrypted one (docs/ca-rotation.md for encrypted keys)"
        )
    # Loaded first: it says what is wrong with the directory, if anything.
    new = load_ca_dir(directory, datetime.datetime.now(datetime.UTC))
    key_name = layout[1] if layout is not None else ""
    return new, (directory / key_name).read_bytes()


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _state(secret: dict[str, Any], where: str) -> CAState:
    data = decode_data(secret.get("data"))
    if complete_layout(data.get) != ROTATED_LAYOUT:
        raise CommandError(
            f"CA Secret {where} does not hold {TLS_CRT} and {TLS_KEY}: ca rotate edits that "
            "layout only; rotate others by hand (docs/ca-rotation.md)"
        )
    if is_encrypted_pem(data[TLS_KEY]):
        raise CommandError(
            f"the key in CA Secret {where} is encrypted: rotate it by hand (docs/ca-rotation.md)"
        )
    try:
        ca = ca_from_secret_data(data, datetime.datetime.now(datetime.UTC))
    except CAError as err:
        raise CommandError(f"CA Secret {where}: {err}") from None
    return CAState(ca.certificate, ca.trust_bundle)


def _patch(
    secret: dict[str, Any], state: CAState, step: Step, new: CertificateAuthority, new_key: bytes
) -> dict[str, Any]:
    """The change of `step`, on the resourceVersion it was decided on: a
    Secret changed meanwhile makes the write fail instead of undoing it."""
    changes = step_changes(state, step, new, new_key)
    metadata: dict[str, Any] = {"resourceVersion": secret["metadata"]["resourceVersion"]}
    if step is Step.SIGN_WITH_NEW:
        signed_at = format_timestamp(datetime.datetime.now(datetime.UTC))
        metadata["annotations"] = {SIGNED_AT_ANNOTATION: signed_at}
    return {
        "metadata": metadata,
        "data": {key: base64.b64encode(value).decode() for key, value in changes.items()},
    }


async def _wait_for_pod_certificates(
    secret: dict[str, Any], max_duration: datetime.timedelta
) -> None:
    """The old root stays trusted as long as pod certificates signed by the
    old key may live (`pod_certificates_wait`)."""
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    signed_at = parse_timestamp(annotations.get(SIGNED_AT_ANNOTATION))
    wait = pod_certificates_wait(signed_at, max_duration, datetime.datetime.now(datetime.UTC))
    left = wait.total_seconds()
    if left > 0:
        print(
            f"waiting {format_duration(datetime.timedelta(seconds=round(left)))} for pod "
            "certificates signed by the old CA to be renewed (--pod-cert-max-duration)"
        )
        await asyncio.sleep(left)


@dataclass(frozen=True)
class _Signed:
    """The certificates the CA signs, with their Secrets' tls.crt and
    ca.crt; the keys of those Secrets; and every managed Secret of the
    scope as listed: one list of certificates and one of the operator's
    Secrets, however many there are."""

    leaves: list[Leaf]
    secret_keys: set[ObjectKey]
    managed: dict[ObjectKey, Object]

    def secret_facts(self, key: ObjectKey) -> SecretFacts | None:
        """A managed Secret as the operator reads it: read only for the
        workloads a rotation waits on, not for every Secret of every poll."""
        body = self.managed.get(key)
        return read_secret(body) if body is not None else None


async def _signed(kube: Kube, args: argparse.Namespace, namespace: str) -> _Signed:
    scope = _scope(args, namespace)
    items, _ = await kube.list(certificates_path(scope))
    secrets, _ = await kube.list(secrets_path(scope), MANAGED_SELECTOR)
    bodies = {object_key(s): s for s in secrets}
    leaves: list[Leaf] = []
    keys: set[ObjectKey] = set()
    for item in items:
        spec, metadata = item.get("spec") or {}, item.get("metadata") or {}
        ca_name = spec.get("caSecretName")
        if (ca_name is not None) if args.cluster_ca else (ca_name != args.secret):
            continue
        item_namespace = metadata.get("namespace", "")
        key = (item_namespace, str(spec.get("secretName")))
        data = decode_data((bodies.get(key) or {}).get("data"))
        leaves.append(
            Leaf(
                name=f"{item_namespace}/{metadata.get('name')}",
                ready=_is_ready(item),
                chain=tuple(load_certificates(data[TLS_CRT])) if data.get(TLS_CRT) else (),
                bundle=tuple(load_certificates(data[CA_CRT])) if data.get(CA_CRT) else (),
            )
        )
        keys.add(key)
    return _Signed(leaves, keys, bodies)


def _scope(args: argparse.Namespace, namespace: str) -> str | None:
    return None if args.cluster_ca else namespace


def _is_ready(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    if status.get("observedGeneration") != (item.get("metadata") or {}).get("generation"):
        return False
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    return ready.get("status") == "True"


def _problems(leaves: list[Leaf], step: Step, new: CertificateAuthority) -> list[str]:
    return leaf_problems(leaves, step, new.trust_bundle, datetime.datetime.now(datetime.UTC))


async def _wait_for_leaves(
    kube: Kube, args: argparse.Namespace, namespace: str, step: Step, new: CertificateAuthority
) -> None:
    deadline = _now() + args.timeout.total_seconds()
    shown = None
    while problems := _problems((await _signed(kube, args, namespace)).leaves, step, new):
        what = "the end" if step is Step.DONE else f"step {step.value}"
        summary = f"{len(problems)} certificate(s) not ready for {what}: {problems[0]}"
        if _now() > deadline:
            raise CommandError(f"timed out after {format_duration(args.timeout)}: {summary}")
        if summary != shown:
            print(f"waiting: {summary}")
            shown = summary
        await asyncio.sleep(POLL_SECONDS)


async def _wait_for_rolls(kube: Kube, args: argparse.Namespace, namespace: str, step: Step) -> None:
    """Until every workload that follows reloads (`mtls.dev/reload`) and
    mounts a certificate of this CA, or the trust bundle that a cluster CA's
    rotation changes, was rolled for what it mounts now and its rollout is
    done. The operator spaces its rolls out (--workload-roll-rate): the next
    step must not start while pods of the last are still being replaced."""
    deadline = _now() + args.timeout.total_seconds()
    what = f"step {step.value - 1}"  # the last step done
    shown = None
    while pending := await _pending_rolls(kube, args, namespace):
        summary = f"{len(pending)} workload(s) not rolled for {what} yet: {pending[0]}"
        if _now() > deadline:
            raise CommandError(
                f"timed out after {format_duration(args.timeout)}: {summary} (an operator run "
                f"with --no-workload-rolls rolls nothing: roll them yourself, or drop "
                f"{RELOAD_ANNOTATION} from them)"
            )
        if summary != shown:
            print(f"waiting: {summary}")
            shown = summary
        await asyncio.sleep(POLL_SECONDS)


async def _pending_rolls(kube: Kube, args: argparse.Namespace, namespace: str) -> list[str]:
    signed = await _signed(kube, args, namespace)
    scope = _scope(args, namespace)
    # Every trust bundle is part of what a workload's pods should run, as
    # the operator sums it up; only a cluster CA's rotation changes them.
    configmaps, _ = await kube.list(configmaps_path(scope), CONFIGMAP_SELECTOR)
    bundles: dict[ObjectKey, Published] = {object_key(c): published(c) for c in configmaps}
    # What the pods should run counts every managed Secret they mount, of
    # whichever CA; only the CA's own leaves (and, for a cluster CA, the
    # bundles) make a workload one the rotation waits on.
    concerned = signed.secret_keys | (bundles.keys() if args.cluster_ca else set())
    pending: list[str] = []
    for kind in WorkloadKind:
        workloads, _ = await kube.list(workloads_path(kind, scope))
        for workload in workloads:
            workload_namespace, name = object_key(workload)
            mounts = mounted(workload)
            names = {(workload_namespace, n) for n in mounts.secrets | mounts.config_maps}
            if names & concerned and roll_pending(workload, kind, signed.secret_facts, bundles.get):
                pending.append(f"{kind.value} {workload_namespace}/{name}")
    return sorted(pending)


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _print_plan(
    kube: Kube, args: argparse.Namespace, namespace: str, step: Step, new: CertificateAuthority
) -> int:
    where = f"{namespace}/{args.secret}"
    if step is Step.DONE:
        print(f"{where} is rotated already: nothing to do")
        return 0
    for left in steps_left(step):
        print(f"would do step {left.value} of 3: {DOING[left]}")
    leaves = (await _signed(kube, args, namespace)).leaves
    problems = _problems(leaves, step, new)
    waiting = f"; first it would wait for {len(problems)}: {problems[0]}" if problems else ""
    print(f"{len(leaves)} certificate(s) signed by {where}{waiting}")
    return 0
