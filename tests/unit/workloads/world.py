"""The workload controller over an in-memory API and a fake clock, with the
managed Secrets, trust-bundle ConfigMaps and workloads delivered to the
informers as their watches would deliver them."""

from __future__ import annotations

import datetime
from functools import partial
from typing import Any

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.paths import events_path, secrets_path
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.trust_bundles import (
    CONFIGMAP_NAME,
    CONFIGMAP_SELECTOR,
    configmap_body,
    configmaps_path,
    published,
)
from mtls_operator.api.workloads import WorkloadKind, workloads_path
from mtls_operator.pki import CertificateAuthority
from mtls_operator.runtime.cache import InformerGroup
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import Object
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.shared import managed_secrets
from mtls_operator.workloads.controller import NAME, WorkloadController, WorkloadSettings
from mtls_operator.workloads.facts import READERS, WorkloadFacts

from support.clock import NOW, FakeClock
from support.fake_api import FakeKube
from support.objects import NAMESPACE, certificate_spec, secret_body
from support.workloads import rolled_out, workload_body

WINDOW = datetime.timedelta(seconds=5)
Key = tuple[str, str, str]


def key(name: str, kind: WorkloadKind = WorkloadKind.DEPLOYMENT, namespace: str = NAMESPACE) -> Key:
    return (namespace, kind.value, name)


class World:
    def __init__(self, ca: CertificateAuthority, *, rate: float = 1.0, burst: int = 5) -> None:
        self.ca = ca
        self.kube = FakeKube()
        self.clock = FakeClock(NOW)
        self.metrics = Metrics()
        self.runtime = Runtime(self.kube, self.clock, self.metrics, workers=1, crypto_threads=1)
        self.controller = WorkloadController(
            self.runtime, WorkloadSettings(rate, WINDOW, burst, trust_bundle_configmaps=True)
        )
        self.lane = self.runtime.lane(NAME)
        cache = self.runtime.cache
        # The informers the controller was given, asked for as any controller asks.
        self.secrets = managed_secrets(cache, ())
        self.bundles = cache.informer(
            "trust-bundle-configmaps", configmaps_path(None), published, CONFIGMAP_SELECTOR
        )
        self.workloads: dict[WorkloadKind, InformerGroup[WorkloadFacts]] = {
            kind: cache.group(kind.plural, partial(workloads_path, kind), READERS[kind], ())
            for kind in WorkloadKind
        }
        self.serials: dict[tuple[str, str], str] = {}
        self.controller.follow()  # what `start` does once the Secrets are listed

    def close(self) -> None:
        self.runtime.executor.shutdown(wait=True)

    # The cluster changing

    def issue(self, secret: str, namespace: str = NAMESPACE) -> Object:
        """The operator (re-)issues `secret`, owned by the certificate of its name."""
        certificate = secret.removesuffix("-tls")
        owner = CertificateRef(namespace, certificate, f"uid-{certificate}")
        body = secret_body(
            certificate_spec(secretName=secret), self.ca, owner=owner, now=self.clock.now()
        )
        body["metadata"]["namespace"] = namespace
        written = self.kube.put(secrets_path(namespace, secret), body)
        informer = self.secrets.of(namespace)
        assert informer is not None
        informer.wrote(written)  # as the certificate controller holds what it wrote
        leaf = read_secret(written).leaf
        assert leaf is not None
        self.serials[(namespace, secret)] = leaf.serial_number
        return written

    def relabel(self, secret: str, namespace: str = NAMESPACE) -> None:
        """A drift repair: the Secret's labels change, nothing its pods read."""
        body = self.kube.objects[secrets_path(namespace, secret)]
        body["metadata"].setdefault("labels", {})["team"] = "payments"
        self.deliver_secret(self.kube.put(secrets_path(namespace, secret), body))

    def deliver_secret(self, body: Object) -> None:
        informer = self.secrets.of(body["metadata"]["namespace"])
        assert informer is not None
        informer.apply("MODIFIED", body)

    def delete_secret(self, secret: str, namespace: str = NAMESPACE) -> None:
        informer = self.secrets.of(namespace)
        assert informer is not None
        informer.apply("DELETED", self.kube.objects.pop(secrets_path(namespace, secret)))

    def publish_bundle(self, bundle: str, namespace: str = NAMESPACE, crl: str = "") -> None:
        body = configmap_body(namespace, bundle, crl)
        self.bundles.apply(
            "MODIFIED", self.kube.put(configmaps_path(namespace, CONFIGMAP_NAME), body)
        )

    def apply(self, body: Object, namespace: str = NAMESPACE) -> Object:
        """A workload created or changed, its rollout done."""
        kind = WorkloadKind(body["kind"])
        body["metadata"]["namespace"] = namespace
        body.setdefault("metadata", {})["uid"] = f"uid-{body['metadata']['name']}"
        path = workloads_path(kind, namespace, body["metadata"]["name"])
        stored = self.kube.put(path, body)
        informer = self.workloads[kind].of(namespace)
        assert informer is not None
        informer.apply("MODIFIED", stored)
        return stored

    def workload(self, name: str, **options: Any) -> Object:
        namespace = options.pop("namespace", NAMESPACE)
        return self.apply(rolled_out(workload_body(name, **options)), namespace)

    def stored(self, name: str, kind: WorkloadKind = WorkloadKind.DEPLOYMENT) -> Object:
        return self.kube.objects[workloads_path(kind, NAMESPACE, name)]

    # Time and work

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def run(self) -> list[Key]:
        """Reconcile every queued key of the controller until none is left."""
        looked: list[Key] = []
        while len(self.runtime.queue):
            work = await self.runtime.queue.get()
            looked.append(work[1])
            await self.controller.reconcile(work[1])
            self.runtime.queue.done(work)
        return looked

    async def due(self, *keys: Key) -> list[Key]:
        """Reconcile those of `keys` whose scheduled time has come, then what they queued."""
        now = self.clock.time()
        ready = [k for k in keys if (self.lane.due_at(k) or now + 1) <= now]
        for due_key in ready:
            self.lane.cancel(due_key)
            await self.controller.reconcile(due_key)
        return ready + await self.run()

    # What was written

    def patches(self) -> list[str]:
        return [path for verb, path in self.kube.writes if verb == "PATCH" and "/apps/" in path]

    def events(self, namespace: str = NAMESPACE) -> list[tuple[str, str, str, str]]:
        """(involved kind, involved name, reason, message) of each Event."""
        return [
            (
                body["involvedObject"]["kind"],
                body["involvedObject"]["name"],
                body["reason"],
                body["message"],
            )
            for body in self.kube.created(events_path(namespace))
        ]
