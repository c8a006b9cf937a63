"""The workloads the operator may roll when what they mount changes
(apps/v1 Deployments, StatefulSets and DaemonSets), and the annotations
that ask for a roll and record one."""

from __future__ import annotations

import enum


class WorkloadKind(enum.StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    DAEMON_SET = "DaemonSet"


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

