"""A workload (apps/v1 Deployment, StatefulSet or DaemonSet, as the API
returns it) as the roll decision reads it: whether it asks to be rolled,
which Secrets and ConfigMaps its pods mount, what it records, and whether
a rollout is still under way.

Workloads are written by anyone, so every field may be missing, null or
of another type than the API's schema says: such a field counts as empty,
and nothing here raises. A strange object never stops the operator."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RELOAD_ANNOTATION,
    WorkloadKind,
)

ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"
# The Progressing condition's reason once a Deployment's rollout gave up.
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"


@dataclass(frozen=True)
class Mounts:
    """Names, in the workload's namespace, of what its pods read."""

    secrets: frozenset[str] = frozenset()
    config_maps: frozenset[str] = frozenset()
    # (name, keys) of each ConfigMap the pods read only some keys of (a
    # volume's `items`, an env `configMapKeyRef`), sorted by name; one not
    # here is read whole. A pod that reads only `ca.crt` of a trust bundle
    # is not rolled for a new CRL beside it.
    config_map_keys: tuple[tuple[str, frozenset[str]], ...] = ()

    def keys_read(self, config_map: str) -> frozenset[str] | None:
        """The keys of `config_map` the pods read; None: all of them."""
        return dict(self.config_map_keys).get(config_map)


def follows_reloads(workload: Mapping[str, Any]) -> bool:
    return _annotations(workload).get(RELOAD_ANNOTATION) == "true"


def recorded_digest(workload: Mapping[str, Any]) -> str | None:
    """The digest of the mounted content the workload's pods run, as last
    recorded; None for a workload never recorded."""
    value = _annotations(workload).get(MOUNTED_DIGEST_ANNOTATION)
    return value if isinstance(value, str) and value else None


def mounted(workload: Mapping[str, Any]) -> Mounts:
    """Every Secret and ConfigMap the pod template names, as a volume (also
    projected) or in the environment of a container or init container."""
    pod = _mapping(_mapping(_spec(workload).get("template")).get("spec"))
    secrets: set[str] = set()
    config_maps = _ConfigMapReads()
    for volume in _mappings(pod.get("volumes")):
        _add(secrets, _mapping(volume.get("secret")).get("secretName"))
        config_maps.volume(_mapping(volume.get("configMap")))
        for source in _mappings(_mapping(volume.get("projected")).get("sources")):
            _add(secrets, _mapping(source.get("secret")).get("name"))
            config_maps.volume(_mapping(source.get("configMap")))
    for container in [*_mappings(pod.get("containers")), *_mappings(pod.get("initContainers"))]:
        for source in _mappings(container.get("envFrom")):
            _add(secrets, _mapping(source.get("secretRef")).get("name"))
            config_maps.whole(_mapping(source.get("configMapRef")).get("name"))
        for variable in _mappings(container.get("env")):
            value_from = _mapping(variable.get("valueFrom"))
            _add(secrets, _mapping(value_from.get("secretKeyRef")).get("name"))
            key_ref = _mapping(value_from.get("configMapKeyRef"))
            config_maps.some(key_ref.get("name"), [key_ref.get("key")])
    return config_maps.mounts(frozenset(secrets))


class _ConfigMapReads:
    """The ConfigMaps a pod template reads, and which keys of each."""

    def __init__(self) -> None:
        self._whole: set[str] = set()
        self._keys: dict[str, set[str]] = {}

    def volume(self, source: Mapping[str, Any]) -> None:
        # Without `items` (or with an empty list) every key is projected.
        items = [item.get("key") for item in _mappings(source.get("items"))]
        if items:
            self.some(source.get("name"), items)
        else:
            self.whole(source.get("name"))

    def whole(self, name: object) -> None:
        _add(self._whole, name)

    def some(self, name: object, keys: list[object]) -> None:
        if _is_name(name):
            self._keys.setdefault(name, set()).update(key for key in keys if _is_name(key))

    def mounts(self, secrets: frozenset[str]) -> Mounts:
        partly = tuple(
            (name, frozenset(keys))
            for name, keys in sorted(self._keys.items())
            if name not in self._whole
        )
        return Mounts(secrets, frozenset(self._whole | self._keys.keys()), partly)


def rolling(workload: Mapping[str, Any], kind: str | None = None) -> bool:
    """Whether a rollout is still under way, judged as `kubectl rollout
    status` judges each kind. `kind` defaults to the object's own (the
    items of a list carry none). A kind we do not roll is never rolling.

    Where kubectl would wait forever, the rollout is not under way, so that
    a roll asked for then is not held back until someone steps in:
    - a paused Deployment: the roll joins the changes held for its resume,
      which then rolls once;
    - a Deployment past its progress deadline: that rollout has stopped,
      and a new one replaces its ReplicaSet;
    - the OnDelete strategy (StatefulSet, DaemonSet): pods are replaced
      only when someone deletes them, so counting updated pods would wait
      on that person; only a spec change its controller has not yet
      observed is under way."""
    judge = _JUDGES.get(str(kind if kind is not None else workload.get("kind")))
    return judge(workload) if judge is not None else False


def _deployment_rolling(workload: Mapping[str, Any]) -> bool:
    spec, status = _spec(workload), _status(workload)
    if not _observed(workload):
        return True
    if spec.get("paused") is True or _progress_deadline_exceeded(status):
        return False
    replicas = _optional_int(spec.get("replicas"))
    updated = _int(status.get("updatedReplicas"))
    if replicas is not None and updated < replicas:
        return True
    if _int(status.get("replicas")) > updated:
        return True  # old replicas still terminating
    return _int(status.get("availableReplicas")) < updated


def _stateful_set_rolling(workload: Mapping[str, Any]) -> bool:
    spec, status = _spec(workload), _status(workload)
    strategy = _mapping(spec.get("updateStrategy"))
    if not _observed(workload):
        return True
    if _strategy_type(strategy) == ON_DELETE:
        return False
    replicas = _optional_int(spec.get("replicas"))
    if replicas is not None and _int(status.get("readyReplicas")) < replicas:
        return True
    rolling_update = strategy.get("rollingUpdate")
    if isinstance(rolling_update, Mapping):
        # With a partition, the pods below it keep the current revision for
        # good: the revisions never agree, the count of updated pods does.
        partition = _optional_int(rolling_update.get("partition"))
        if replicas is None or partition is None:
            return False
        return _int(status.get("updatedReplicas")) < replicas - partition
    return status.get("updateRevision") != status.get("currentRevision")


def _daemon_set_rolling(workload: Mapping[str, Any]) -> bool:
    status = _status(workload)
    if not _observed(workload):
        return True
    if _strategy_type(_mapping(_spec(workload).get("updateStrategy"))) == ON_DELETE:
        return False
    desired = _int(status.get("desiredNumberScheduled"))
    if _int(status.get("updatedNumberScheduled")) < desired:
        return True
    return _int(status.get("numberAvailable")) < desired


_JUDGES: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    WorkloadKind.DEPLOYMENT: _deployment_rolling,
    WorkloadKind.STATEFUL_SET: _stateful_set_rolling,
    WorkloadKind.DAEMON_SET: _daemon_set_rolling,
}


def _observed(workload: Mapping[str, Any]) -> bool:
    """Whether the workload's controller has seen its latest spec: until it
    has, the status describes an older one."""
    generation = _int(_mapping(workload.get("metadata")).get("generation"))
    return generation <= _int(_status(workload).get("observedGeneration"))


def _progress_deadline_exceeded(status: Mapping[str, Any]) -> bool:
    return any(
        condition.get("type") == "Progressing"
        and condition.get("reason") == PROGRESS_DEADLINE_EXCEEDED
        for condition in _mappings(status.get("conditions"))
    )


def _strategy_type(strategy: Mapping[str, Any]) -> str:
    # The API server defaults it; an object without one was not defaulted.
    kind = strategy.get("type")
    return kind if isinstance(kind, str) and kind else ROLLING_UPDATE


def _annotations(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(workload.get("metadata")).get("annotations"))


def _spec(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(workload.get("spec"))


def _status(workload: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(workload.get("status"))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def _add(names: set[str], name: object) -> None:
    if _is_name(name):
        names.add(name)


def _optional_int(value: object) -> int | None:
    # bool is an int to Python, not to the API.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: object) -> int:
    """A status count: absent means zero, as in the API's Go types."""
    return _optional_int(value) or 0
