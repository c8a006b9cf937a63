"""The workloads the operator may roll when what they mount changes
(apps/v1 Deployments, StatefulSets and DaemonSets), and the annotations
that ask for a roll and record one, with the patches that write them."""

from __future__ import annotations

import enum
from typing import Any

from mtls_operator.api.paths import resource_path

APPS_API_VERSION = "apps/v1"


class WorkloadKind(enum.StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    DAEMON_SET = "DaemonSet"

    @property
    def plural(self) -> str:
        return f"{self.value.lower()}s"


def workloads_path(kind: WorkloadKind, namespace: str | None, name: str | None = None) -> str:
    return resource_path(APPS_API_VERSION, kind.plural, namespace, name)


def involved_object(kind: WorkloadKind, namespace: str, name: str, uid: str) -> dict[str, str]:
    """A workload as an Event about it names it."""
    return {
        "apiVersion": APPS_API_VERSION,
        "kind": kind.value,
        "name": name,
        "namespace": namespace,
        "uid": uid,
    }


# Set by users on a workload, exactly "true": roll it when a certificate
# or trust bundle it mounts changes (for programs that read them once).
RELOAD_ANNOTATION = "mtls.dev/reload"
# On the pod template: the digest of the mounted content the pods were
# restarted for. Its change is what rolls the workload, as the restartedAt
# of `kubectl rollout restart` does; a digest rather than a time, so that
# a roll sent twice (a retry) restarts the pods once.
RESTARTED_FOR_ANNOTATION = "mtls.dev/restarted-for"
# On the workload itself: the digest of the mounted content its pods run,
# which the decision compares with what they should run. Set with every
# roll, and alone when a workload is first seen, without restarting it.
MOUNTED_DIGEST_ANNOTATION = "mtls.dev/mounted-digest"


def roll_patch(digest: str, resource_version: str) -> dict[str, Any]:
    """A JSON merge patch (a strategic merge patch too) that rolls the
    workload: its controller replaces the pods, in its own way and pace,
    because their template changed; nothing is deleted. It carries the
    resourceVersion the decision read, so that a workload changed since (a
    rollout begun meanwhile) is looked at again instead of rolled."""
    return {
        **record_patch(digest, resource_version),
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: digest}}}},
    }


def record_patch(digest: str, resource_version: str) -> dict[str, Any]:
    """A JSON merge patch that records the digest the pods run and leaves
    the pod template, and so the pods, as they are."""
    return {
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {MOUNTED_DIGEST_ANNOTATION: digest},
        }
    }
