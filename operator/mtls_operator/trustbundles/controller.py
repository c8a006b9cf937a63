"""The trust-bundle publisher: the cluster CA's trust bundle (every root
trusted now: during a CA rotation the old and the new, exactly as `ca.crt` in
leaf Secrets) published where clients read it.

- One ClusterTrustBundle per signer, for pods' `clusterTrustBundle`
  projected volumes: `mtls.dev/cluster-ca` (MtlsCertificates) and the pod
  signer's name.
- A ConfigMap `mtls-ca-bundle` (key `ca.crt`, and the cluster CA's CRL as
  `ca.crl`) in every namespace the `--trust-bundle-namespace-selector`
  selects, for tools that read ConfigMaps. A ConfigMap of that name the operator does not manage is
  never touched.

A bundle is published before any leaf is signed with it (the CA store's
publication gate), and a CA that goes missing or unusable unpublishes
nothing: the roots stay until a usable CA says otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from mtls_operator.api.managed_secret import MANAGED_SELECTOR
from mtls_operator.api.mtls_policy import LabelSelector
from mtls_operator.api.pod_certificates import cluster_trust_bundles_path, trust_bundle_name
from mtls_operator.api.trust_bundles import (
    CONFIGMAP_NAME,
    CONFIGMAP_SELECTOR,
    Published,
    configmap_body,
    configmap_data,
    configmaps_path,
    published,
    trust_bundle_body,
)
from mtls_operator.authorities.store import CARef
from mtls_operator.pki import CertificateAuthority
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import Informer
from mtls_operator.shared import SharedController, SharedParts

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


class TrustBundleController(SharedController[TrustBundleSettings]):
    name = NAME

    def __init__(self, shared: SharedParts, settings: TrustBundleSettings) -> None:
        super().__init__(shared, settings)
        runtime = shared.runtime
        self._bundles = runtime.cache.informer(
            "trust-bundles",
            cluster_trust_bundles_path(),
            published,
            MANAGED_SELECTOR,
            absent_is_empty=True,
        )
        self._bundles.subscribe(
            lambda change: self._lane.add(("ClusterTrustBundle", change.latest.signer_name))
        )
        self._configmaps: Informer[Published] | None = None
        if settings.namespace_selector is not None:
            self._configmaps = runtime.cache.informer(
                "trust-bundle-configmaps", configmaps_path(None), published, CONFIGMAP_SELECTOR
            )
            self._configmaps.subscribe(lambda change: self._lane.add(("ConfigMap", change.key[0])))
        shared.tenancy.on_labels_change(lambda namespace: self._lane.add(("ConfigMap", namespace)))
        shared.revocations.on_change(self._crl_changed, crl_only=True)

    def keys(self) -> list[Key]:
        keys: list[Key] = [("ClusterTrustBundle", s) for s in self._settings.signer_names]
        selector = self._settings.namespace_selector
        namespaces = {namespace for namespace, _ in self._configmaps or ()}
        if selector is not None:
            namespaces.update(self._tenancy.namespaces(selector))
        return keys + [("ConfigMap", ns) for ns in sorted(namespaces)]

    async def start(self) -> None:
        self._authorities.use(self._settings.cluster_ca, self._ca_changed, NAME)
        await self._bundles.synced()
        await self._revocations.synced()  # the CRL published beside the roots
        if self._configmaps is not None:
            await self._configmaps.synced()
        if self._bundles.absent:
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
            self._lane.retry(key)
            logger.warning("could not publish the trust bundle (%s %s): %s", kind, name, err)
            return
        self._lane.forget(key)

    async def _confirm_published(self, ca: CertificateAuthority | None = None) -> None:
        if ca is None:
            state = await self._authorities.state(self._settings.cluster_ca)
            if not isinstance(state, CertificateAuthority):
                return
            ca = state
        bundle = ca.trust_bundle_pem.decode()
        names = [trust_bundle_name(s, BUNDLE_SUFFIX) for s in self._settings.signer_names]
        if all(_holds(self._bundles.get(("", n)), bundle) for n in names):
            self._authorities.published(self._settings.cluster_ca, ca.trust_bundle_sha256)

    async def _publish_bundle(self, signer_name: str, ca: CertificateAuthority) -> None:
        name = trust_bundle_name(signer_name, BUNDLE_SUFFIX)
        bundle = ca.trust_bundle_pem.decode()
        current = self._bundles.get(("", name))
        if _holds(current, bundle):
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
        self._bundles.wrote(written)
        logger.info("published the trust bundle in ClusterTrustBundle %s", name)

    async def _publish_configmap(self, namespace: str, ca: CertificateAuthority) -> None:
        selector, configmaps = self._settings.namespace_selector, self._configmaps
        if selector is None or configmaps is None:
            return
        wanted = self._tenancy.selects(selector, namespace)
        key = (namespace, CONFIGMAP_NAME)
        current = configmaps.get(key)
        kube = self._runtime.kube
        if current is not None and not current.managed:
            return  # someone else's ConfigMap: never touched
        if not wanted:
            if current is not None:
                # A stale bundle is worse than none: it may still trust a dropped root.
                await kube.delete(configmaps_path(namespace, CONFIGMAP_NAME))
                configmaps.removed(key)
            return
        bundle = ca.trust_bundle_pem.decode()
        crl = self._revocations.crl_pem(self._settings.cluster_ca)
        if _holds(current, bundle, crl):
            return
        body = configmap_body(namespace, bundle, crl)
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
                "data": configmap_data(bundle, crl),
            }
            written = await kube.merge_patch(configmaps_path(namespace, CONFIGMAP_NAME), patch)
        configmaps.wrote(written)

    def _ca_changed(self, _: object) -> None:
        for key in self.keys():
            self._lane.add(key)

    def _crl_changed(self, ca: CARef) -> None:
        if ca != self._settings.cluster_ca:
            return  # a namespace CA's CRL is read from its own record
        for key in self.keys():
            if key[0] == "ConfigMap":
                self._lane.add(key)


def _holds(current: Published | None, bundle: str, crl: str = "") -> bool:
    return current is not None and current.bundle == bundle and current.crl == crl
