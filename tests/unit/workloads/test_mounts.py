"""A workload as the roll decision reads it, as tables: whether it asks to
be rolled, what its pods mount (volumes, projections, the environment of
containers and init containers), and whether a rollout is under way, judged
per kind as `kubectl rollout status` does. Strange objects count as empty
and never raise."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from mtls_operator.api.workloads import MOUNTED_DIGEST_ANNOTATION, RELOAD_ANNOTATION
from mtls_operator.workloads.mounts import (
    Mounts,
    follows_reloads,
    mounted,
    recorded_digest,
    rolling,
)


def with_pod(pod: Any) -> dict[str, Any]:
    return {"kind": "Deployment", "spec": {"template": {"spec": pod}}}


def annotated(annotations: Any) -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"annotations": annotations}}


# --- follows_reloads, recorded_digest ---


@pytest.mark.parametrize(
    ("workload", "follows"),
    [
        (annotated({RELOAD_ANNOTATION: "true"}), True),
        (annotated({RELOAD_ANNOTATION: "true", "other": "x"}), True),
        (annotated({RELOAD_ANNOTATION: "True"}), False),
        (annotated({RELOAD_ANNOTATION: "false"}), False),
        (annotated({RELOAD_ANNOTATION: "1"}), False),
        (annotated({RELOAD_ANNOTATION: ""}), False),
        (annotated({RELOAD_ANNOTATION: True}), False),
        (annotated({"mtls.dev/reloads": "true"}), False),
        (annotated({}), False),
        (annotated(None), False),
        (annotated(["mtls.dev/reload"]), False),
        ({"metadata": None}, False),
        ({"metadata": "x"}, False),
        ({}, False),
    ],
)
def test_only_the_annotation_set_to_true_asks_for_reloads(
    workload: dict[str, Any], follows: bool
) -> None:
    assert follows_reloads(workload) is follows


@pytest.mark.parametrize(
    ("workload", "digest"),
    [
        (annotated({MOUNTED_DIGEST_ANNOTATION: "0123456789abcdef"}), "0123456789abcdef"),
        (annotated({MOUNTED_DIGEST_ANNOTATION: ""}), None),
        (annotated({MOUNTED_DIGEST_ANNOTATION: 12}), None),
        (annotated({"mtls.dev/restarted-for": "0123456789abcdef"}), None),
        (annotated(None), None),
        ({}, None),
    ],
)
def test_the_recorded_digest(workload: dict[str, Any], digest: str | None) -> None:
    assert recorded_digest(workload) == digest


# --- mounted ---

S = frozenset


@pytest.mark.parametrize(
    ("pod", "secrets", "config_maps"),
    [
        pytest.param(
            {"volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]},
            {"web-tls"},
            set(),
            id="secret volume",
        ),
        pytest.param(
            {"volumes": [{"name": "ca", "configMap": {"name": "mtls-ca-bundle"}}]},
            set(),
            {"mtls-ca-bundle"},
            id="configMap volume",
        ),
        pytest.param(
            {
                "volumes": [
                    {
                        "name": "all",
                        "projected": {
                            "sources": [
                                {"secret": {"name": "web-tls", "items": [{"key": "tls.crt"}]}},
                                {"configMap": {"name": "mtls-ca-bundle"}},
                                {"serviceAccountToken": {"path": "token"}},
                                {"downwardAPI": {"items": []}},
                            ]
                        },
                    }
                ]
            },
            {"web-tls"},
            {"mtls-ca-bundle"},
            id="projected volume",
        ),
        pytest.param(
            {
                "containers": [
                    {
                        "name": "app",
                        "envFrom": [
                            {"secretRef": {"name": "env-secret"}},
                            {"configMapRef": {"name": "env-config"}, "prefix": "X_"},
                        ],
                    }
                ]
            },
            {"env-secret"},
            {"env-config"},
            id="container envFrom",
        ),
        pytest.param(
            {
                "containers": [
                    {
                        "name": "app",
                        "env": [
                            {"name": "PLAIN", "value": "1"},
                            {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                            {
                                "name": "C",
                                "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}},
                            },
                            {
                                "name": "F",
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                            },
                        ],
                    }
                ]
            },
            {"s"},
            {"c"},
            id="container env",
        ),
        pytest.param(
            {
                "containers": [{"name": "app"}],
                "initContainers": [
                    {
                        "name": "init",
                        "envFrom": [{"secretRef": {"name": "init-secret"}}],
                        "env": [
                            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "init-cm"}}}
                        ],
                    }
                ],
            },
            {"init-secret"},
            {"init-cm"},
            id="init containers",
        ),
        pytest.param(
            {
                "containers": [
                    {"name": "a", "envFrom": [{"secretRef": {"name": "web-tls"}}]},
                    {"name": "b", "env": [{"valueFrom": {"secretKeyRef": {"name": "db"}}}]},
                ],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "web-tls"}}]}],
                "volumes": [
                    {"secret": {"secretName": "web-tls"}},
                    {"projected": {"sources": [{"secret": {"name": "db"}}]}},
                    {"configMap": {"name": "mtls-ca-bundle"}},
                ],
            },
            {"web-tls", "db"},
            {"mtls-ca-bundle"},
            id="everything, names repeated",
        ),
        pytest.param(
            {
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": "/etc"}},
                    {"name": "pvc", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "csi", "csi": {"driver": "secrets-store.csi.k8s.io"}},
                ],
                "imagePullSecrets": [{"name": "registry"}],
                "containers": [{"name": "app", "image": "web", "ports": [{"containerPort": 80}]}],
            },
            set(),
            set(),
            id="unrelated fields",
        ),
        pytest.param(
            {
                "volumes": None,
                "containers": None,
                "initContainers": None,
            },
            set(),
            set(),
            id="null lists",
        ),
        pytest.param(
            {
                "volumes": [
                    None,
                    {"secret": None},
                    {"configMap": None},
                    {"projected": None},
                    {"projected": {"sources": None}},
                    {"projected": {"sources": [None, {"secret": None}, {"configMap": None}]}},
                ],
                "containers": [
                    None,
                    {"envFrom": None, "env": None},
                    {"envFrom": [None, {"secretRef": None}, {"configMapRef": None}]},
                    {"env": [None, {"valueFrom": None}, {"valueFrom": {"secretKeyRef": None}}]},
                ],
                "initContainers": [{"env": [{"valueFrom": {"configMapKeyRef": None}}]}],
            },
            set(),
            set(),
            id="null entries and fields",
        ),
        pytest.param(
            {
                "volumes": [
                    "tls",
                    {"secret": "web-tls"},
                    {"secret": {"secretName": 7}},
                    {"secret": {"secretName": ""}},
                    {"configMap": {"name": ["x"]}},
                    {"projected": {"sources": {"secret": {"name": "a"}}}},
                    {"projected": ["sources"]},
                ],
                "containers": {"name": "app", "envFrom": [{"secretRef": {"name": "b"}}]},
                "initContainers": [
                    {"envFrom": {"secretRef": {"name": "c"}}},
                    {"env": [{"valueFrom": [{"secretKeyRef": {"name": "d"}}]}]},
                    {"env": [{"valueFrom": {"secretKeyRef": "e"}}]},
                ],
            },
            set(),
            set(),
            id="ill-typed fields",
        ),
    ],
)
def test_what_the_pod_template_mounts(
    pod: dict[str, Any], secrets: set[str], config_maps: set[str]
) -> None:
    found = mounted(with_pod(pod))
    assert (found.secrets, found.config_maps) == (S(secrets), S(config_maps))


BUNDLE = "mtls-ca-bundle"


def bundle_volume(**fields: Any) -> dict[str, Any]:
    return {"name": "roots", "configMap": {"name": BUNDLE, **fields}}


def bundle_env(key: Any) -> dict[str, Any]:
    return {"name": "CA", "valueFrom": {"configMapKeyRef": {"name": BUNDLE, "key": key}}}


@pytest.mark.parametrize(
    ("pod", "keys"),
    [
        pytest.param({"volumes": [bundle_volume()]}, None, id="a volume: every key"),
        pytest.param({"volumes": [bundle_volume(items=[])]}, None, id="empty items: every key"),
        pytest.param(
            {"volumes": [bundle_volume(items=[{"key": "ca.crt", "path": "ca.crt"}])]},
            {"ca.crt"},
            id="items",
        ),
        pytest.param(
            {
                "volumes": [
                    {
                        "name": "all",
                        "projected": {
                            "sources": [
                                {"configMap": {"name": BUNDLE, "items": [{"key": "ca.crl"}]}},
                                {"secret": {"name": "web-tls"}},
                            ]
                        },
                    }
                ]
            },
            {"ca.crl"},
            id="projected items",
        ),
        pytest.param(
            {"containers": [{"name": "app", "env": [bundle_env("ca.crt")]}]},
            {"ca.crt"},
            id="env configMapKeyRef",
        ),
        pytest.param(
            {
                "volumes": [bundle_volume(items=[{"key": "ca.crl"}])],
                "initContainers": [{"name": "init", "env": [bundle_env("ca.crt")]}],
            },
            {"ca.crt", "ca.crl"},
            id="keys of several reads together",
        ),
        pytest.param(
            {
                "volumes": [bundle_volume(items=[{"key": "ca.crt"}])],
                "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": BUNDLE}}]}],
            },
            None,
            id="some keys and envFrom: every key",
        ),
        pytest.param(
            {"volumes": [bundle_volume(items=[{"key": 3}, {"path": "x"}, "ca.crt"])]},
            set(),
            id="ill-typed items: no key",
        ),
        pytest.param({"volumes": [bundle_volume(items="ca.crt")]}, None, id="items not a list"),
        pytest.param({}, None, id="not read at all"),
    ],
)
def test_which_keys_of_a_config_map_the_pods_read(pod: Any, keys: set[str] | None) -> None:
    found = mounted(with_pod(pod)).keys_read(BUNDLE)
    assert found == (None if keys is None else frozenset(keys))


@pytest.mark.parametrize(
    "workload",
    [
        {},
        {"spec": None},
        {"spec": "x"},
        {"spec": {"template": None}},
        {"spec": {"template": []}},
        {"spec": {"template": {"spec": None}}},
        {"spec": {"template": {"spec": 3}}},
        {"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}},
    ],
)
def test_a_workload_without_a_pod_template_mounts_nothing(workload: dict[str, Any]) -> None:
    assert mounted(workload) == Mounts()


def test_a_deployment_as_the_api_returns_it() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": 4,
            "annotations": {RELOAD_ANNOTATION: "true"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "volumeMounts": [{"name": "tls", "mountPath": "/tls"}],
                        }
                    ],
                    "volumes": [
                        {"name": "tls", "secret": {"secretName": "web-tls", "defaultMode": 420}},
                        {"name": "ca", "configMap": {"name": "mtls-ca-bundle"}},
                    ],
                },
            },
        },
        "status": {
            "observedGeneration": 4,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        },
    }
    assert follows_reloads(deployment)
    assert mounted(deployment) == Mounts(S({"web-tls"}), S({"mtls-ca-bundle"}))
    assert not rolling(deployment)


# --- rolling ---


def workload(
    kind: str | None,
    spec: dict[str, Any],
    status: dict[str, Any] | None,
    generation: int = 2,
) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "web", "generation": generation}, "spec": spec}
    if kind is not None:
        body["kind"] = kind
    if status is not None:
        body["status"] = status
    return body


def changed(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    result = copy.deepcopy(base)
    result.update(fields)
    return result


DEPLOYED = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
PROGRESS_DEADLINE = {
    "type": "Progressing",
    "status": "False",
    "reason": "ProgressDeadlineExceeded",
}
NEW_REPLICA_SET = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}


@pytest.mark.parametrize(
    ("spec", "status", "under_way"),
    [
        pytest.param({"replicas": 3}, DEPLOYED, False, id="rolled out"),
        pytest.param(
            {"replicas": 3}, changed(DEPLOYED, observedGeneration=1), True, id="spec not observed"
        ),
        pytest.param({"replicas": 3}, None, True, id="no status yet"),
        pytest.param(
            {"replicas": 3},
            changed(DEPLOYED, replicas=4, updatedReplicas=1, availableReplicas=3),
            True,
            id="mid-rollout: 1 of 3 updated",
        ),
        pytest.param(
            {"replicas": 3}, changed(DEPLOYED, replicas=4), True, id="old replica terminating"
        ),
        pytest.param(
            {"replicas": 3},
            changed(DEPLOYED, availableReplicas=2),
            True,
            id="updated not available",
        ),
        pytest.param(
            {"replicas": 3},
            changed(DEPLOYED, updatedReplicas=1, conditions=[NEW_REPLICA_SET]),
            True,
            id="progressing",
        ),
        pytest.param(
            {"replicas": 3},
            changed(DEPLOYED, updatedReplicas=1, conditions=[PROGRESS_DEADLINE]),
            False,
            id="progress deadline exceeded",
        ),
        pytest.param(
            {"replicas": 3, "paused": True},
            changed(DEPLOYED, updatedReplicas=0),
            False,
            id="paused with a change held",
        ),
        pytest.param(
            {"replicas": 3, "paused": "yes"},
            changed(DEPLOYED, updatedReplicas=0),
            True,
            id="paused ill-typed",
        ),
        pytest.param({"replicas": 0}, {"observedGeneration": 2}, False, id="scaled to zero"),
        pytest.param(
            {},
            {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1},
            True,
            id="no spec replicas, not available",
        ),
        pytest.param({}, changed(DEPLOYED), False, id="no spec replicas, rolled out"),
        pytest.param(
            {"replicas": "3"}, changed(DEPLOYED, updatedReplicas=True), True, id="ill-typed counts"
        ),
        pytest.param(
            {"replicas": True}, {"observedGeneration": 2}, False, id="a count that is a boolean"
        ),
        pytest.param(
            {"replicas": 3},
            changed(DEPLOYED, replicas=2, updatedReplicas=2, availableReplicas=2),
            True,
            id="fewer updated than wanted",
        ),
    ],
)
def test_whether_a_deployment_is_rolling(
    spec: dict[str, Any], status: dict[str, Any] | None, under_way: bool
) -> None:
    assert rolling(workload("Deployment", spec, status)) is under_way


def stateful_set_strategy(partition: int | None = 0, kind: str = "RollingUpdate") -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": kind}
    if partition is not None:
        strategy["rollingUpdate"] = {"partition": partition}
    return strategy


SET_UP = {
    "observedGeneration": 2,
    "replicas": 3,
    "readyReplicas": 3,
    "updatedReplicas": 3,
    "currentRevision": "web-2",
    "updateRevision": "web-2",
}
MID_UPDATE = changed(SET_UP, updatedReplicas=1, currentRevision="web-1")


@pytest.mark.parametrize(
    ("strategy", "status", "under_way"),
    [
        pytest.param(stateful_set_strategy(), SET_UP, False, id="rolled out"),
        pytest.param(
            stateful_set_strategy(),
            changed(SET_UP, observedGeneration=1),
            True,
            id="spec not observed",
        ),
        pytest.param(stateful_set_strategy(), MID_UPDATE, True, id="mid-rollout: 1 of 3 updated"),
        pytest.param(
            stateful_set_strategy(), changed(SET_UP, readyReplicas=2), True, id="a pod not ready"
        ),
        pytest.param(stateful_set_strategy(partition=2), MID_UPDATE, False, id="partition reached"),
        pytest.param(
            stateful_set_strategy(partition=2),
            changed(MID_UPDATE, updatedReplicas=0),
            True,
            id="partition not reached",
        ),
        pytest.param(
            stateful_set_strategy(partition=None),
            MID_UPDATE,
            True,
            id="no rollingUpdate: revisions differ",
        ),
        pytest.param(
            stateful_set_strategy(partition=None),
            SET_UP,
            False,
            id="no rollingUpdate: revisions agree",
        ),
        pytest.param({}, MID_UPDATE, True, id="no strategy: revisions differ"),
        pytest.param(
            stateful_set_strategy(partition=None, kind="OnDelete"),
            changed(MID_UPDATE, updatedReplicas=0),
            False,
            id="OnDelete, pods not deleted",
        ),
        pytest.param(
            stateful_set_strategy(partition=None, kind="OnDelete"),
            changed(MID_UPDATE, observedGeneration=1),
            True,
            id="OnDelete, spec not observed",
        ),
    ],
)
def test_whether_a_stateful_set_is_rolling(
    strategy: dict[str, Any], status: dict[str, Any], under_way: bool
) -> None:
    spec = {"replicas": 3, "updateStrategy": strategy}
    assert rolling(workload("StatefulSet", spec, status)) is under_way


SCHEDULED = {
    "observedGeneration": 2,
    "desiredNumberScheduled": 3,
    "updatedNumberScheduled": 3,
    "numberAvailable": 3,
}


@pytest.mark.parametrize(
    ("strategy", "status", "under_way"),
    [
        pytest.param("RollingUpdate", SCHEDULED, False, id="rolled out"),
        pytest.param(
            "RollingUpdate", changed(SCHEDULED, observedGeneration=1), True, id="spec not observed"
        ),
        pytest.param(
            "RollingUpdate",
            changed(SCHEDULED, updatedNumberScheduled=1),
            True,
            id="mid-rollout: 1 of 3 updated",
        ),
        pytest.param(
            "RollingUpdate", changed(SCHEDULED, numberAvailable=2), True, id="updated not available"
        ),
        pytest.param("RollingUpdate", {"observedGeneration": 2}, False, id="no node to run on"),
        pytest.param(
            None, changed(SCHEDULED, updatedNumberScheduled=1), True, id="no strategy: mid-rollout"
        ),
        pytest.param(
            "OnDelete",
            changed(SCHEDULED, updatedNumberScheduled=0),
            False,
            id="OnDelete, pods not deleted",
        ),
        pytest.param(
            "OnDelete",
            changed(SCHEDULED, observedGeneration=1),
            True,
            id="OnDelete, spec not observed",
        ),
    ],
)
def test_whether_a_daemon_set_is_rolling(
    strategy: str | None, status: dict[str, Any], under_way: bool
) -> None:
    spec = {"updateStrategy": {"type": strategy}} if strategy else {}
    assert rolling(workload("DaemonSet", spec, status)) is under_way


MID_DEPLOYMENT = changed(DEPLOYED, updatedReplicas=1)


@pytest.mark.parametrize(
    ("body", "kind", "under_way"),
    [
        pytest.param(
            workload("Deployment", {"replicas": 3}, MID_DEPLOYMENT),
            None,
            True,
            id="the object's kind",
        ),
        pytest.param(
            workload(None, {"replicas": 3}, MID_DEPLOYMENT),
            "Deployment",
            True,
            id="a list item, kind given",
        ),
        pytest.param(
            workload(None, {"replicas": 3}, MID_DEPLOYMENT), None, False, id="no kind at all"
        ),
        pytest.param(workload("CronJob", {}, None), None, False, id="a kind we do not roll"),
        pytest.param(
            workload("StatefulSet", {"replicas": 3}, DEPLOYED),
            "Deployment",
            False,
            id="the kind given wins",
        ),
        pytest.param(
            workload("StatefulSet", {"replicas": 3}, DEPLOYED),
            None,
            True,
            id="judged as its own kind",
        ),
        pytest.param(
            {"kind": "Deployment", "metadata": None, "spec": [], "status": "x"},
            None,
            False,
            id="ill-typed parts",
        ),
    ],
)
def test_which_kind_judges(body: dict[str, Any], kind: str | None, under_way: bool) -> None:
    assert rolling(body, kind) is under_way
