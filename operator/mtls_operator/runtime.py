"""The running operator: the store, the watches, the scheduler and the
workers, wired together. kopf delivers MtlsCertificate events; everything
else is started and stopped here."""

from __future__ import annotations

import asyncio
import datetime
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mtls_operator.ca_secrets import bootstrap_ca_data
from mtls_operator.cas import CARef, CAStore
from mtls_operator.kube import ApiError, Kube, Login, secrets_path
from mtls_operator.metrics import Metrics
from mtls_operator.reconcile import Reconciler, Settings
from mtls_operator.reflector import Reflector
from mtls_operator.scheduler import Scheduler, TokenBucket, WorkQueue
from mtls_operator.secrets import MANAGED_BY_LABEL, MANAGER, encode_data
from mtls_operator.store import Key, SecretSink, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]  # empty: all namespaces
    cluster_ca: CARef
    bootstrap_ca: bool = False
    min_duration: datetime.timedelta = datetime.timedelta(hours=1)
    workers: int = 32
    reissue_rate: float = 20.0
    metrics_port: int = 8080
    leader_election: bool = True
    lease_namespace: str = "mtls-operator"
    lease_name: str = "mtls-operator"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Runtime:
    def __init__(self, config: OperatorConfig, metrics: Metrics) -> None:
        self.config = config
        self.queue: WorkQueue[Key] = WorkQueue()
        self.scheduler: Scheduler[Key] = Scheduler(self.queue)
        self.store = Store(self.queue.add)
        self.metrics = metrics
        self.limiter = TokenBucket(config.reissue_rate, burst=max(1, int(config.reissue_rate)))
        # Key generation and signing run here, never on the event loop.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mtls-crypto")
        self._tasks: list[asyncio.Task[Any]] = []
        self._reflectors: list[Reflector] = []
        self.kube: Kube | None = None
        self.cas: CAStore | None = None
        self.reconciler: Reconciler | None = None

    async def start(self, login: Login) -> None:
        """Connect, bootstrap the cluster CA if asked, and load every managed
        Secret before the first certificate is looked at, so that a restart
        never mistakes an existing Secret for a missing one.

        Safe to call again after a failure (kopf retries start-up handlers):
        what was started is kept, not started twice."""
        if self.kube is None:
            self.kube = Kube(login)
            self.cas = CAStore(self.kube, self._ca_changed, utcnow)
            self.reconciler = Reconciler(
                kube=self.kube,
                store=self.store,
                cas=self.cas,
                scheduler=self.scheduler,
                limiter=self.limiter,
                executor=self.executor,
                metrics=self.metrics,
                settings=Settings(self.config.cluster_ca, self.config.min_duration),
                clock=utcnow,
            )
        kube, reconciler = self.kube, self.reconciler
        if reconciler is None:
            raise RuntimeError("the reconciler is created together with the client")
        if self.config.bootstrap_ca:
            await ensure_cluster_ca(kube, self.config.cluster_ca)
        if not self._reflectors:
            selector = {"labelSelector": f"{MANAGED_BY_LABEL}={MANAGER}"}
            for namespace in self.config.namespaces or (None,):
                reflector = Reflector(
                    kube, secrets_path(namespace), SecretSink(self.store, namespace), selector
                )
                self._reflectors.append(reflector)
                self._spawn(reflector.run(), f"secrets-{namespace or 'all'}")
        await asyncio.gather(*(r.synced.wait() for r in self._reflectors))
        logger.info("loaded %d managed Secrets", len(self.store.secrets))
        if not self._tasks[len(self._reflectors) :]:
            self._spawn(self.scheduler.run(), "scheduler")
            for index in range(self.config.workers):
                self._spawn(self._work(reconciler), f"worker-{index}")

    def on_certificate_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self.store.remove_certificate(body)
            metadata = body.get("metadata") or {}
            self.queue.add((metadata.get("namespace", ""), metadata.get("name", "")))
        else:
            self.store.upsert_certificate(body)

    def healthy(self) -> bool:
        """No task of a started runtime has died (a standby has none yet)."""
        return all(not t.done() for t in self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.cas is not None:
            await self.cas.close()
        if self.kube is not None:
            await self.kube.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _ca_changed(self, ref: CARef) -> None:
        if self.reconciler is not None:
            for key in self.reconciler.certificates_of(ref):
                self.queue.add(key)

    async def _work(self, reconciler: Reconciler) -> None:
        while True:
            key = await self.queue.get()
            try:
                await reconciler.reconcile(key)
            finally:
                self.queue.done(key)

    def _spawn(self, coroutine: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=name))


async def ensure_cluster_ca(kube: Kube, ref: CARef) -> None:
    """Create a self-signed cluster CA if its Secret does not exist yet.
    Two replicas racing here is fine: the second create fails with 409."""
    if await kube.get(secrets_path(ref.namespace, ref.name)) is not None:
        return
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, bootstrap_ca_data, utcnow())
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ref.name, "namespace": ref.namespace},
        "type": "kubernetes.io/tls",
        "data": encode_data(data),
    }
    try:
        await kube.create(secrets_path(ref.namespace), body)
    except ApiError as err:
        if not err.conflict:
            raise
        return
    logger.info("created the cluster CA in Secret %s", ref)
