"""How long the kubelets take to bring a changed Secret or ConfigMap into the pods that mount it.

A kubelet rewrites a pod's mounted Secrets and ConfigMaps when it syncs the pod: once every
`syncFrequency` of its configuration (1m by default), plus a jitter of up to half of it.
Measured on a real node (docs/local-node.md): 31-86 s at 1m, 11-15 s at 10s. A step of a CA
rotation must reach every pod before the next one starts, so `ca rotate` waits that long,
read from the nodes themselves (each kubelet's /configz, through the API server's node proxy).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from mtls_operator.api.durations import format_duration, parse_duration
from mtls_operator.api.paths import CORE, core_path, resource_path
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Kube

# The jitter on top of syncFrequency, and the atomic write of the files.
JITTER = 0.5
MARGIN = datetime.timedelta(seconds=10)
# When a kubelet's configuration cannot be read: its default syncFrequency.
DEFAULT_SYNC_FREQUENCY = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class Propagation:
    """How long a Secret's change takes to reach every pod, and how that was learnt."""

    bound: datetime.timedelta
    how: str


def bound_for(sync_frequency: datetime.timedelta) -> datetime.timedelta:
    return sync_frequency * (1 + JITTER) + MARGIN


async def propagation(kube: Kube) -> Propagation:
    """The slowest node's bound; none at all without nodes (no pod mounts anything)."""
    try:
        nodes, _ = await kube.list(core_path("nodes"), metadata_only=True)
    except ApiError as err:
        return Propagation(
            bound_for(DEFAULT_SYNC_FREQUENCY),
            f"the nodes could not be listed ({err.reason}): taken as a kubelet's default "
            f"syncFrequency, {format_duration(DEFAULT_SYNC_FREQUENCY)}",
        )
    if not nodes:
        return Propagation(datetime.timedelta(0), "no nodes: no pod mounts the Secrets")
    slowest, unread = datetime.timedelta(0), []
    for node in nodes:
        name = node["metadata"]["name"]
        frequency = await _sync_frequency(kube, name)
        if frequency is None:
            unread.append(name)
            frequency = DEFAULT_SYNC_FREQUENCY
        slowest = max(slowest, frequency)
    how = f"syncFrequency {format_duration(slowest)} (the slowest of {len(nodes)} nodes)"
    if unread:
        how += (
            f"; the kubelet configuration of {', '.join(sorted(unread)[:3])} could not be read "
            f"(nodes/proxy), taken as the default {format_duration(DEFAULT_SYNC_FREQUENCY)}"
        )
    return Propagation(bound_for(slowest), how)


async def _sync_frequency(kube: Kube, node: str) -> datetime.timedelta | None:
    try:
        configz = await kube.get(
            resource_path(CORE, "nodes", None, node, "proxy/configz"), retry=False
        )
    except ApiError:
        return None
    text = ((configz or {}).get("kubeletconfig") or {}).get("syncFrequency")
    try:
        return parse_duration(str(text)) if text else None
    except ValueError:
        return None
