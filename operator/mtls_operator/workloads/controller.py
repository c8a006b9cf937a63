"""The workload controller: rolls the Deployments, StatefulSets and
DaemonSets that ask for it (`mtls.dev/reload: "true"`) when a certificate
or trust bundle their pods mount changes, for programs that read them only
at start-up.

It reads the managed Secrets through the certificate controller's own
informer (the same one: the cache gives it to both) and the ConfigMaps
`mtls-ca-bundle` through the trust-bundle publisher's. A Secret's change
whose serial or trust bundle differs queues the workloads that mount it,
found in an index; a workload's own change queues it. One look at a
workload: gather (what its pods mount, from the cache), decide
(`policy.rollout.decide`, pure), act (one merge patch, Events, a metric).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from dataclasses import dataclass
from functools import partial

from mtls_operator.api.managed_secret import SecretFacts
from mtls_operator.api.trust_bundles import (
    CONFIGMAP_SELECTOR,
    Published,
    configmaps_path,
    published,
)
from mtls_operator.api.workloads import WorkloadKind, workloads_path
from mtls_operator.policy import rollout
from mtls_operator.policy.rollout import Mounted, MountKind, Record, Roll, UpToDate, Wait
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import Change, InformerGroup
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import ObjectKey
from mtls_operator.runtime.rate_limit import TokenBucket, Turns
from mtls_operator.runtime.scheduler import namespace_of
from mtls_operator.shared import managed_secrets
from mtls_operator.workloads.content import mounted_content
from mtls_operator.workloads.facts import (
    CONFIG_MAPS_INDEX,
    READERS,
    SECRETS_INDEX,
    WorkloadFacts,
    mounted_config_maps,
    mounted_secrets,
)
from mtls_operator.workloads.rolls import RollWriter, WorkloadKey

logger = logging.getLogger(__name__)

NAME = "workloads"


@dataclass(frozen=True)
class WorkloadSettings:
    rate: float  # rolls per second, operator-wide
    window: datetime.timedelta  # changes this close together roll once
    burst: int  # rolls that may go at once before the rate spaces them out
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    # Whether ConfigMaps mtls-ca-bundle are published (and so watched) at all.
    trust_bundle_configmaps: bool = False


class WorkloadController:
    name = NAME

    def __init__(self, runtime: Runtime, settings: WorkloadSettings) -> None:
        self._runtime = runtime
        self._settings = settings
        self._lane = runtime.lane(NAME, tenant_of=namespace_of)
        cache, namespaces = runtime.cache, settings.namespaces
        self._workloads: dict[WorkloadKind, InformerGroup[WorkloadFacts]] = {}
        for kind in WorkloadKind:
            group = cache.group(
                kind.plural, partial(workloads_path, kind), READERS[kind], namespaces
            )
            group.add_index(SECRETS_INDEX, mounted_secrets)
            group.add_index(CONFIG_MAPS_INDEX, mounted_config_maps)
            self._workloads[kind] = group
        # The certificate controller's informer: asked the same way, the same one.
        self._secrets = managed_secrets(cache, namespaces)
        self._bundles = (
            cache.informer(
                "trust-bundle-configmaps", configmaps_path(None), published, CONFIGMAP_SELECTOR
            )
            if settings.trust_bundle_configmaps
            else None
        )
        bucket = TokenBucket(settings.rate, burst=settings.burst, clock=runtime.clock)
        self._turns = Turns(bucket, runtime.clock)
        # Since when what each workload mounts differs from what it records.
        self._differs_since: dict[WorkloadKey, datetime.datetime] = {}
        self._writer = RollWriter(runtime, self._workloads, self._secrets, self._lane)

    async def start(self) -> None:
        """Look at workloads only once every managed Secret is in, so that a
        restart never takes a Secret not listed yet for one that went away.
        The workloads themselves are not waited for: they are queued as
        they come."""
        await self._secrets.synced()
        if self._bundles is not None:
            await self._bundles.synced()
        self.follow()

    def follow(self) -> None:
        """Queue the workloads from now on: every one held, and each that
        changes or mounts what changes."""
        for kind, group in self._workloads.items():
            group.subscribe(partial(self._workload_changed, kind))
        self._secrets.subscribe(self._secret_changed)
        if self._bundles is not None:
            self._bundles.subscribe(self._bundle_changed)

    # Who to look at

    def _workload_changed(self, kind: WorkloadKind, change: Change[WorkloadFacts]) -> None:
        if any(facts is not None and facts.follows for facts in (change.old, change.new)):
            namespace, name = change.key
            self._lane.add((namespace, kind.value, name))

    def _secret_changed(self, change: Change[SecretFacts]) -> None:
        """A new serial or trust bundle; our own writes (re-issues) included.
        A deletion rolls nothing (`_gather`): the Secret written again does."""
        if change.new is None or _content(change.old) == _content(change.new):
            return
        self._queue_mounting(SECRETS_INDEX, change.key)

    def _bundle_changed(self, change: Change[Published]) -> None:
        old, new = change.old, change.new
        if new is None or (old is not None and old.content_digest() == new.content_digest()):
            return  # what the pods would mount is the same (roots and CRL)
        self._queue_mounting(CONFIG_MAPS_INDEX, change.key)

    def _queue_mounting(self, index: str, key: ObjectKey) -> None:
        """The workloads of the object's own namespace whose pods mount it."""
        for kind, group in self._workloads.items():
            informer = group.of(key[0])
            for namespace, name in informer.keys_by(index, key) if informer is not None else ():
                self._lane.add((namespace, kind.value, name))

    # One look

    async def reconcile(self, key: WorkloadKey) -> None:
        try:
            await self._look(key)
        except ApiError as err:  # reading it again after a conflict failed: later
            self._lane.retry(key)
            logger.warning("looking at %s %s/%s failed: %s", key[1], key[0], key[2], err)

    async def _look(self, key: WorkloadKey) -> None:
        namespace, kind, name = key
        facts = self._workloads[WorkloadKind(kind)].get((namespace, name))
        if facts is None or not facts.follows:
            self._forget(key)
            return
        mounted = self._gather(key, facts)
        if mounted is None:
            return  # a mounted Secret is being repaired or gone: its next change queues this
        given = self._input(key, facts, mounted)
        match rollout.decide(given):
            case UpToDate():
                self._settled(key, mounted)
            case Wait(until):
                if until is not None:  # else a rollout under way: its end queues this again
                    self._lane.schedule(key, until.timestamp())
            case Record(digest):
                if await self._writer.record(key, facts, digest):
                    self._settled(key, mounted)
            case Roll(digest):
                if await self._writer.roll(key, facts, digest, mounted):
                    self._settled(key, mounted)

    def _gather(self, key: WorkloadKey, facts: WorkloadFacts) -> tuple[Mounted, ...] | None:
        """What the pods mount that the operator manages, as it is now; None
        while something they run is missing (its return queues this again)."""
        bundles = self._bundles
        found = mounted_content(
            facts.namespace,
            facts.mounts,
            self._secrets.get,
            bundles.get if bundles is not None else _no_bundle,
        )
        if found is None:
            return None  # a Secret being repaired
        # A Secret or bundle the pods run, still in the template, that is gone
        # (deleted, or no longer the operator's) is nothing to roll to: new
        # pods could not mount it.
        still = {(MountKind.SECRET, n) for n in facts.mounts.secrets} | {
            (MountKind.CONFIG_MAP, n) for n in facts.mounts.config_maps
        }
        ran = {(m.kind, m.name) for m in self._writer.ran(key) or ()}
        if (ran & still) - {(m.kind, m.name) for m in found}:
            return None
        return tuple(found)

    def _input(
        self, key: WorkloadKey, facts: WorkloadFacts, mounted: tuple[Mounted, ...]
    ) -> rollout.Input:
        now = self._runtime.clock.now()
        wanted = rollout.digest(mounted)
        if facts.recorded is not None and facts.recorded != wanted:
            since: datetime.datetime | None = self._differs_since.setdefault(key, now)
        else:
            since = self._differs_since.pop(key, None)
        given = rollout.Input(
            recorded=facts.recorded,
            wanted=wanted,
            rolling=facts.rolling,
            differs_since=since,
            now=now,
            window=self._settings.window,
        )
        if not rollout.needs_turn(given):
            return given
        turn = self._turns.wait(key)
        if turn is None:
            return given
        return dataclasses.replace(given, turn=datetime.datetime.fromtimestamp(turn, datetime.UTC))

    def _settled(self, key: WorkloadKey, mounted: tuple[Mounted, ...]) -> None:
        """The pods run what is mounted now (or were just rolled for it)."""
        self._differs_since.pop(key, None)
        self._turns.forget(key)
        self._lane.forget(key)
        self._writer.running(key, mounted)

    def _forget(self, key: WorkloadKey) -> None:
        """Gone, or no longer following reloads: nothing kept for it."""
        self._differs_since.pop(key, None)
        self._turns.forget(key)
        self._lane.forget(key)
        self._writer.forget(key)


def _no_bundle(_: ObjectKey) -> Published | None:
    return None


def _content(secret: SecretFacts | None) -> tuple[str | None, str | None]:
    """What the pods read that a roll is for: the certificate and the trust bundle."""
    if secret is None:
        return (None, None)
    return (secret.leaf.serial_number if secret.leaf else None, secret.trust_bundle_sha256)
