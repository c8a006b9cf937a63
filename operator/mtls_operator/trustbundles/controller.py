"""The trust-bundle publisher: the cluster CA's trust bundle (every root
trusted now: during a CA rotation the old and the new, exactly as `ca.crt` in
leaf Secrets) published where clients read it.

- One ClusterTrustBundle per signer, for pods' `clusterTrustBundle`
  projected volumes: `mtls.dev/cluster-ca` (MtlsCertificates) and the pod
  signer's name.
- A ConfigMap `mtls-ca-bundle` (key `ca.crt`) in every namespace the
  `--trust-bundle-namespace-selector` selects, for tools that read
  ConfigMaps. A ConfigMap of that name the operator does not manage is
  never touched.

A bundle is published before any leaf is signed with it (the CA store's
publication gate), and a CA that goes missing or unusable unpublishes
nothing: the roots stay until a usable CA says otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL, MANAGER
from mtls_operator.api.mtls_policy import LabelSelector
from mtls_operator.api.pod_certificates import cluster_trust_bundles_path, trust_bundle_name
from mtls_operator.authorities.store import AuthorityStore, CARef
from mtls_operator.pki import CertificateAuthority
from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import Object
from mtls_operator.runtime.reflector import Reflector
from mtls_operator.tenancy.store import Tenancy
from mtls_operator.trustbundles.objects import (
    BUNDLE_KEY,
    CONFIGMAP_NAME,
    Published,
    configmap_body,
    configmaps_path,
    published,
    trust_bundle_body,
)

logger = logging.getLogger(__name__)

NAME = "trustbundles"
CLUSTER_CA_SIGNER = "mtls.dev/cluster-ca"
BUNDLE_SUFFIX = "roots"

Key = tuple[str, str]  # ("ClusterTrustBundle", signer name) or ("ConfigMap", namespace)


@dataclass(frozen=True)
class TrustBundleSettings:
    cluster_ca: CARef
    signer_names: tuple[str, ...] = (CLUSTER_CA_SIGNER,)
    # None: no ConfigMaps.
    namespace_selector: LabelSelector | None = None


class _Sink:
    """Keeps what a watch shows (by the name it is published under) and
    queues the key that publishes it: a ClusterTrustBundle's signer name,
    a ConfigMap's namespace."""

    def __init__(
        self, seen: dict[str, Published], lane_add: Callable[[Key], None], kind: str
    ) -> None:
        self._seen, self._add, self._kind = seen, lane_add, kind

    def _names(self, obj: Object) -> tuple[str, str]:
        """(where it is kept, the key's name)."""
        metadata = obj.get("metadata") or {}
        if self._kind == "ConfigMap":
            namespace = str(metadata.get("namespace", ""))
            return namespace, namespace
        signer = str((obj.get("spec") or {}).get("signerName", ""))
        return str(metadata.get("name", "")), signer

    def replace(self, items: list[Object]) -> None:
        self._seen.clear()
        for item in items:
            self._seen[self._names(item)[0]] = published(item)

    def apply(self, event_type: str, obj: Object) -> None:
        kept, key = self._names(obj)
        if event_type == "DELETED":
            self._seen.pop(kept, None)
        else:
            self._seen[kept] = published(obj)
        self._add((self._kind, key))


class TrustBundleController:
    name = NAME

    def __init__(
        self,
        runtime: Runtime,
        authorities: AuthorityStore,
        tenancy: Tenancy,
        settings: TrustBundleSettings,
    ) -> None:
        self._runtime = runtime
        self._authorities = authorities
        self._tenancy = tenancy
        self._settings = settings
        self._lane = runtime.lane(NAME)
        self._bundles: dict[str, Published] = {}  # by ClusterTrustBundle name
        self._configmaps: dict[str, Published] = {}  # by namespace
        self._failures: dict[Hashable, int] = {}
        tenancy.on_labels_change(lambda namespace: self._lane.add(("ConfigMap", namespace)))

    def keys(self) -> list[Key]:
        keys: list[Key] = [("ClusterTrustBundle", s) for s in self._settings.signer_names]
        selector = self._settings.namespace_selector
        namespaces = set(self._configmaps)
        if selector is not None:
            namespaces.update(self._tenancy.namespaces(selector))
        return keys + [("ConfigMap", ns) for ns in sorted(namespaces)]

    async def start(self) -> None:
        self._authorities.use(self._settings.cluster_ca, self._ca_changed, NAME)
        managed = {"labelSelector": f"{MANAGED_BY_LABEL}={MANAGER}"}
        bundles = Reflector(
            self._runtime.kube,
            cluster_trust_bundles_path(),
            _Sink(self._bundles, self._lane.add, "ClusterTrustBundle"),
            managed,
            absent_is_empty=True,
        )
        reflectors = [bundles]
        if self._settings.namespace_selector is not None:
            # By name, not by label: an unmanaged ConfigMap of that name must
            # be seen too, to be left alone.
            reflectors.append(
                Reflector(
                    self._runtime.kube,
                    configmaps_path(None),
                    _Sink(self._configmaps, self._lane.add, "ConfigMap"),
                    {"fieldSelector": f"metadata.name={CONFIGMAP_NAME}"},
                )
            )
        for index, reflector in enumerate(reflectors):
            self._runtime.watch(reflector, f"trust-bundles-{index}")
        for reflector in reflectors:
            await reflector.synced.wait()
        if bundles.absent:
            logger.warning(
                "ClusterTrustBundles are not served: trust bundles go to ConfigMaps only"
            )
            self._settings = replace(self._settings, signer_names=())
        else:
            # From now on no leaf is signed before its roots are published.
            self._authorities.await_publication(self._settings.cluster_ca)
        # Bundles already current need no write to count as published, so
        # that certificates are not held up at every start.
        await self._confirm_published()
        for key in self.keys():
            self._lane.add(key)

    async def reconcile(self, key: Key) -> None:
        kind, name = key
        ca = await self._authorities.state(self._settings.cluster_ca)
        if not isinstance(ca, CertificateAuthority):
            return  # keep what is published; the CA's change queues us again
        try:
            if kind == "ClusterTrustBundle":
                if name not in self._settings.signer_names:
                    return  # a bundle of ours for a signer no longer published
                await self._publish_bundle(name, ca)
                await self._confirm_published(ca)
            else:
                await self._publish_configmap(name, ca)
        except ApiError as err:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            logger.warning("could not publish the trust bundle (%s %s): %s", kind, name, err)
            delay = backoff.delay(backoff.RECONCILE, failures)
            self._lane.schedule(key, self._runtime.clock.time() + delay)
            return
        self._failures.pop(key, None)

    async def _confirm_published(self, ca: CertificateAuthority | None = None) -> None:
        if ca is None:
            state = await self._authorities.state(self._settings.cluster_ca)
            if not isinstance(state, CertificateAuthority):
                return
            ca = state
        bundle = ca.trust_bundle_pem.decode()
        names = [trust_bundle_name(s, BUNDLE_SUFFIX) for s in self._settings.signer_names]
        if all(self._bundles.get(n) and self._bundles[n].bundle == bundle for n in names):
            self._authorities.published(self._settings.cluster_ca, ca.trust_bundle_sha256)

    async def _publish_bundle(self, signer_name: str, ca: CertificateAuthority) -> None:
        name = trust_bundle_name(signer_name, BUNDLE_SUFFIX)
        bundle = ca.trust_bundle_pem.decode()
        current = self._bundles.get(name)
        if current is not None and current.bundle == bundle:
            return
        body = trust_bundle_body(name, signer_name, bundle)
        kube = self._runtime.kube
        if current is None:
            try:
                written = await kube.create(cluster_trust_bundles_path(), body)
            except ApiError as err:
                if not err.conflict:
                    raise
                written = await kube.get(cluster_trust_bundles_path(name)) or {}
                if not published(written).managed:
                    logger.warning(
                        "ClusterTrustBundle %s exists and is not ours: left as it is", name
                    )
                    return
                body["metadata"]["resourceVersion"] = written["metadata"]["resourceVersion"]
                written = await kube.replace(cluster_trust_bundles_path(name), body)
        else:
            body["metadata"]["resourceVersion"] = current.resource_version
            written = await kube.replace(cluster_trust_bundles_path(name), body)
        self._bundles[name] = published(written)
        logger.info("published the trust bundle in ClusterTrustBundle %s", name)

    async def _publish_configmap(self, namespace: str, ca: CertificateAuthority) -> None:
        selector = self._settings.namespace_selector
        wanted = selector is not None and self._tenancy.selects(selector, namespace)
        current = self._configmaps.get(namespace)
        kube = self._runtime.kube
        if current is not None and not current.managed:
            return  # someone else's ConfigMap: never touched
        if not wanted:
            if current is not None:
                # A stale bundle is worse than none: it may still trust a dropped root.
                await kube.delete(configmaps_path(namespace, CONFIGMAP_NAME))
                self._configmaps.pop(namespace, None)
            return
        bundle = ca.trust_bundle_pem.decode()
        if current is not None and current.bundle == bundle:
            return
        body = configmap_body(namespace, bundle)
        if current is None:
            try:
                written = await kube.create(configmaps_path(namespace), body)
            except ApiError as err:
                if not err.conflict:
                    raise
                return  # appeared meanwhile: its watch event tells whose it is
        else:
            patch = {
                "metadata": {"resourceVersion": current.resource_version},
                "data": {BUNDLE_KEY: bundle},
            }
            written = await kube.merge_patch(configmaps_path(namespace, CONFIGMAP_NAME), patch)
        self._configmaps[namespace] = published(written)

    def _ca_changed(self, _: object) -> None:
        for key in self.keys():
            self._lane.add(key)
