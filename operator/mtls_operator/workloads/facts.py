"""What the workload controller keeps of each Deployment, StatefulSet and
DaemonSet it watches. Every workload of the served namespaces is watched,
to find the few that ask to be rolled (an annotation, which no server-side
selector can choose), so a workload that does not ask is kept as one
object shared by every such workload of its kind; one that asks is kept
as the few facts the roll decision reads, never as the object."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.kept import kept
from mtls_operator.api.workloads import WorkloadKind
from mtls_operator.workloads.mounts import (
    Mounts,
    follows_reloads,
    mounted,
    recorded_digest,
    rolling,
)

# Indexes of the workloads that follow reloads: by (namespace, name) of each
# Secret and each ConfigMap their pods mount.
SECRETS_INDEX = "mounted-secrets"
CONFIG_MAPS_INDEX = "mounted-configmaps"
NO_MOUNTS = Mounts()


@dataclass(frozen=True, slots=True)
class WorkloadFacts:
    kind: WorkloadKind
    follows: bool = False
    namespace: str = ""
    name: str = ""
    uid: str = ""
    resource_version: str = ""
    mounts: Mounts = NO_MOUNTS
    # The digest of what its pods run, as recorded on it (None: never).
    recorded: str | None = None
    rolling: bool = False


def _reader(kind: WorkloadKind) -> Callable[[Mapping[str, Any]], WorkloadFacts]:
    ignored = WorkloadFacts(kind)

    def read(body: Mapping[str, Any]) -> WorkloadFacts:
        if not follows_reloads(body):
            return ignored
        metadata = body.get("metadata") or {}
        return WorkloadFacts(
            kind=kind,
            follows=True,
            namespace=kept(str(metadata.get("namespace", ""))),
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            resource_version=str(metadata.get("resourceVersion", "")),
            mounts=mounted(body),
            recorded=recorded_digest(body),
            # The items of a list carry no kind: the informer's kind is given.
            rolling=rolling(body, kind),
        )

    return read


# One transform per kind, made once: the cache keeps each kind in one form.
READERS = {kind: _reader(kind) for kind in WorkloadKind}


def mounted_secrets(facts: WorkloadFacts) -> Iterable[tuple[str, str]]:
    return [(facts.namespace, name) for name in facts.mounts.secrets]


def mounted_config_maps(facts: WorkloadFacts) -> Iterable[tuple[str, str]]:
    return [(facts.namespace, name) for name in facts.mounts.config_maps]
