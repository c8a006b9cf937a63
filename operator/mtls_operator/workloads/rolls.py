"""The workload controller's writes: the merge patch that records a digest
or rolls a workload (with the resourceVersion it was decided on), the
Events that say why it was rolled, on the workload and on each
certificate whose Secret changed, and the count of rolls."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mtls_operator.api.managed_secret import (
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    SecretFacts,
)
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.workloads import (
    WorkloadKind,
    involved_object,
    record_patch,
    roll_patch,
    workloads_path,
)
from mtls_operator.policy.rollout import Mounted, MountKind
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import InformerGroup
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.events import NORMAL
from mtls_operator.runtime.kube import Object
from mtls_operator.runtime.metrics import FAILURE, SUCCESS
from mtls_operator.runtime.scheduler import Lane
from mtls_operator.workloads.facts import WorkloadFacts

logger = logging.getLogger(__name__)

WorkloadKey = tuple[str, str, str]  # (namespace, kind, name)

# The Event reasons of a roll.
ROLLED_FOR_CERTIFICATE = "CertificateRolled"  # on the workload
ROLLED_A_WORKLOAD = "WorkloadRolled"  # on the certificate


class RollWriter:
    def __init__(
        self,
        runtime: Runtime,
        workloads: Mapping[WorkloadKind, InformerGroup[WorkloadFacts]],
        secrets: InformerGroup[SecretFacts],
        lane: Lane[Any],
    ) -> None:
        self._runtime = runtime
        self._workloads = workloads
        self._secrets = secrets
        self._lane = lane
        # What each workload's pods were last seen to run, to say in the
        # Events of its next roll what changed.
        self._running: dict[WorkloadKey, tuple[Mounted, ...]] = {}

    def running(self, key: WorkloadKey, mounted: tuple[Mounted, ...]) -> None:
        self._running[key] = mounted

    def ran(self, key: WorkloadKey) -> tuple[Mounted, ...] | None:
        """What the pods were last known to run (None: not known since start)."""
        return self._running.get(key)

    def forget(self, key: WorkloadKey) -> None:
        self._running.pop(key, None)

    async def record(self, key: WorkloadKey, facts: WorkloadFacts, digest: str) -> bool:
        """Record `digest` on the workload; its pods stay. Whether it was written."""
        if not await self._patch(key, facts, record_patch(digest, facts.resource_version)):
            return False
        logger.info(
            "%s %s/%s follows reloads: recorded %s", facts.kind, facts.namespace, facts.name, digest
        )
        return True

    async def roll(
        self, key: WorkloadKey, facts: WorkloadFacts, digest: str, mounted: tuple[Mounted, ...]
    ) -> bool:
        """Roll the workload for `digest`, and say why. Whether it was written."""
        written = await self._patch(key, facts, roll_patch(digest, facts.resource_version))
        if written is None:
            self._runtime.metrics.observe_workload_roll(facts.namespace, FAILURE)
        if not written:
            return False
        self._runtime.metrics.observe_workload_roll(facts.namespace, SUCCESS)
        changes = _changes(self._running.get(key), mounted)
        reasons = ", ".join(changes.values()) or "what it no longer mounts"
        logger.info("rolled %s %s/%s for %s", facts.kind, facts.namespace, facts.name, reasons)
        events = self._runtime.events
        involved = involved_object(facts.kind, facts.namespace, facts.name, facts.uid)
        await events.record(involved, NORMAL, ROLLED_FOR_CERTIFICATE, f"rolled for {reasons}")
        for mount, change in changes.items():
            certificate = self._certificate_of(facts.namespace, mount)
            if certificate is not None:
                message = f"{facts.kind} {facts.name} rolled, whose pods mount {change}"
                await events.record(
                    certificate.involved_object(), NORMAL, ROLLED_A_WORKLOAD, message
                )
        return True

    async def _patch(self, key: WorkloadKey, facts: WorkloadFacts, patch: Object) -> bool | None:
        """The merge patch, on the resourceVersion the decision read. False:
        not written, and nothing to try again (a workload changed since is
        read again and looked at again; a deleted one is done with); None:
        refused, tried again later."""
        path = workloads_path(facts.kind, facts.namespace, facts.name)
        group = self._workloads[facts.kind]
        kube = self._runtime.kube
        try:
            group.wrote(await kube.merge_patch(path, patch))
            return True
        except ApiError as err:
            if err.not_found:
                return False  # deleted: its watch event says so
            if not err.conflict:
                failures = self._lane.retry(key)
                log = logger.warning if failures == 0 else logger.debug
                log("could not patch %s %s/%s: %s", facts.kind, facts.namespace, facts.name, err)
                return None
        current = await kube.get(path)
        if current is not None:
            group.learned(current)
        self._lane.add(key)
        return False

    def _certificate_of(self, namespace: str, mount: Mounted) -> CertificateRef | None:
        if mount.kind is not MountKind.SECRET:
            return None
        secret = self._secrets.get((namespace, mount.name))
        if secret is None:
            return None
        name = secret.annotations.get(CERTIFICATE_ANNOTATION)
        uid = secret.annotations.get(CERTIFICATE_UID_ANNOTATION)
        return CertificateRef(namespace, name, uid) if name and uid else None


def _changes(before: tuple[Mounted, ...] | None, now: tuple[Mounted, ...]) -> dict[Mounted, str]:
    """What differs from what the pods ran, each said in words; everything
    they mount when that is not known (the operator started since)."""
    ran = {(m.kind, m.name): m for m in before or ()}
    changes: dict[Mounted, str] = {}
    for mount in now:
        old = ran.get((mount.kind, mount.name))
        if old == mount:
            continue
        if mount.kind is MountKind.CONFIG_MAP:
            changes[mount] = f"ConfigMap {mount.name} (a new trust bundle)"
        elif old is None or old.serial == mount.serial:
            what = f"serial {mount.serial}" if old is None else "a new ca.crt"
            changes[mount] = f"Secret {mount.name} ({what})"
        else:
            changes[mount] = f"Secret {mount.name} (serial {old.serial} -> {mount.serial})"
    return changes
