"""What a workload's pods should run: the content identity of each Secret
and trust bundle they mount that the operator manages. The workload
controller rolls for it; `ca rotate` waits until every workload it
concerns runs it. Both read it here, so that they never disagree on when a
roll is done."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mtls_operator.api.managed_secret import SecretFacts
from mtls_operator.api.trust_bundles import Published
from mtls_operator.api.workloads import WorkloadKind
from mtls_operator.policy.rollout import Mounted, digest
from mtls_operator.runtime.kube import ObjectKey
from mtls_operator.workloads.mounts import (
    Mounts,
    follows_reloads,
    mounted,
    recorded_digest,
    rolling,
)

SecretOf = Callable[[ObjectKey], SecretFacts | None]
BundleOf = Callable[[ObjectKey], Published | None]


def mounted_content(
    namespace: str, mounts: Mounts, secret_of: SecretOf, bundle_of: BundleOf
) -> tuple[Mounted, ...] | None:
    """The managed Secrets and trust bundles of `mounts`, as they are now;
    None while one of the Secrets is being repaired (it holds no readable
    certificate: a roll now would start pods on it)."""
    found: list[Mounted] = []
    for name in sorted(mounts.secrets):
        secret = secret_of((namespace, name))
        if secret is None:
            continue  # not the operator's: what changes in it is not its to roll for
        if secret.leaf is None:
            return None
        bundle = secret.trust_bundle_sha256 or ""
        found.append(Mounted.secret(name, secret.leaf.serial_number, bundle))
    for name in sorted(mounts.config_maps):
        configmap = bundle_of((namespace, name))
        if configmap is not None and configmap.managed:
            fingerprint = configmap.content_digest(mounts.keys_read(name))
            found.append(Mounted.trust_bundle(name, fingerprint))
    return tuple(found)


def roll_pending(
    workload: Mapping[str, Any], kind: WorkloadKind, secret_of: SecretOf, bundle_of: BundleOf
) -> bool:
    """Whether the operator has yet to roll a workload that follows
    reloads for what it mounts now, or the rollout of its pods is still
    under way. A workload the operator never recorded is not waited for:
    its first sight records it and rolls nothing."""
    recorded = recorded_digest(workload)
    if not follows_reloads(workload) or recorded is None:
        return False
    if rolling(workload, kind):
        return True
    namespace = str((workload.get("metadata") or {}).get("namespace", ""))
    content = mounted_content(namespace, mounted(workload), secret_of, bundle_of)
    return content is None or digest(content) != recorded
