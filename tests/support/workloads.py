"""Deployments, StatefulSets and DaemonSets as tests write them: pods that
mount Secrets and ConfigMaps as volumes, with no replicas (the end-to-end
control plane has no node: a rollout of no pods completes by itself)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtls_operator.api.workloads import RELOAD_ANNOTATION, WorkloadKind


def workload_body(
    name: str,
    *,
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT,
    namespace: str | None = None,
    secrets: Sequence[str] = (),
    config_maps: Sequence[str] = (),
    config_map_keys: Mapping[str, Sequence[str]] | None = None,
    follows: bool = True,
    replicas: int = 0,
) -> dict[str, Any]:
    labels = {"app": name}
    volumes: list[dict[str, Any]] = [
        {"name": f"secret-{index}", "secret": {"secretName": secret}}
        for index, secret in enumerate(secrets)
    ] + [
        {"name": f"configmap-{index}", "configMap": _config_map_source(config_map, config_map_keys)}
        for index, config_map in enumerate(config_maps)
    ]
    container = {
        "name": "app",
        "image": "registry.invalid/app:1",
        "volumeMounts": [
            {"name": volume["name"], "mountPath": f"/etc/{volume['name']}", "readOnly": True}
            for volume in volumes
        ],
    }
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    if follows:
        metadata["annotations"] = {RELOAD_ANNOTATION: "true"}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [container], "volumes": volumes},
        },
    }
    if kind is not WorkloadKind.DAEMON_SET:
        spec["replicas"] = replicas
    if kind is WorkloadKind.STATEFUL_SET:
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind.value, "metadata": metadata, "spec": spec}


def _config_map_source(name: str, keys: Mapping[str, Sequence[str]] | None) -> dict[str, Any]:
    """The whole ConfigMap, or only the keys `keys` lists for it (`items`)."""
    if keys is None or name not in keys:
        return {"name": name}
    return {"name": name, "items": [{"key": key, "path": key} for key in keys[name]]}


def rolled_out(body: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    """`body` as its controller leaves it once the rollout of `generation` is done."""
    replicas = body["spec"].get("replicas", 0)
    counts = {
        WorkloadKind.DEPLOYMENT.value: {
            "replicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        },
        WorkloadKind.STATEFUL_SET.value: {
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "currentRevision": "r1",
            "updateRevision": "r1",
        },
        WorkloadKind.DAEMON_SET.value: {
            "desiredNumberScheduled": 0,
            "updatedNumberScheduled": 0,
            "numberAvailable": 0,
        },
    }[body["kind"]]
    body["metadata"]["generation"] = generation
    body["status"] = {"observedGeneration": generation, **counts}
    return body
