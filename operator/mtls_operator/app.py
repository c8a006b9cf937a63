"""The operator assembled: one runtime, the CA store, and the controllers,
run by kopf's lifecycle. This is the only module that knows them all."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import kopf

from mtls_operator.api.mtls_policy import LabelSelector
from mtls_operator.authorities.bootstrap import ensure_cluster_ca
from mtls_operator.authorities.store import AuthorityStore, CARef
from mtls_operator.certificates.controller import CertificateController, Settings
from mtls_operator.crls.controller import CRLController, CRLSignerSettings
from mtls_operator.mtlspolicies.controller import PolicyController
from mtls_operator.podcertificates.controller import (
    DEFAULT_SIGNER_NAME,
    PodCertificateController,
    PodSignerSettings,
)
from mtls_operator.policy.crl import DEFAULT_CRL, CRLSettings
from mtls_operator.revocations.store import Revocations
from mtls_operator.runtime.clock import Clock, SystemClock
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kopf_lifecycle import build_registry
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.login import Login
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.shared import SharedParts
from mtls_operator.tenancy.store import IdentitySettings, Tenancy
from mtls_operator.trustbundles.controller import (
    CLUSTER_CA_SIGNER,
    TrustBundleController,
    TrustBundleSettings,
)
from mtls_operator.workloads.controller import WorkloadController, WorkloadSettings

DEFAULT_IDENTITY = IdentitySettings()
# Where the operator runs when nothing says otherwise (the install's namespace).
DEFAULT_NAMESPACE = "mtls-operator"


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's settings, each default set here once (the command
    line leaves a field it is not given at its default)."""

    namespaces: tuple[str, ...]  # empty: all namespaces
    cluster_ca: CARef
    bootstrap_ca: bool = False
    min_duration: datetime.timedelta = datetime.timedelta(hours=1)
    workers: int = 32
    reissue_rate: float = 20.0
    metrics_port: int = 8080
    leader_election: bool = True
    lease_namespace: str = DEFAULT_NAMESPACE
    lease_name: str = "mtls-operator"
    identity: IdentitySettings = DEFAULT_IDENTITY
    pod_signer: bool = True
    pod_signer_name: str = DEFAULT_SIGNER_NAME
    pod_certificate_max_duration: datetime.timedelta = datetime.timedelta(hours=24)
    # Where ConfigMaps mtls-ca-bundle are kept; None: nowhere.
    trust_bundle_namespaces: LabelSelector | None = None
    # Roll the workloads that ask for it (mtls.dev/reload) when what they mount changes.
    workload_rolls: bool = True
    workload_roll_rate: float = 1.0  # rolls per second, operator-wide
    # Rolls that may go at once before the rate spaces them out: a few
    # renewals due together roll their workloads without delay.
    workload_roll_burst: int = 5
    workload_roll_window: datetime.timedelta = datetime.timedelta(seconds=5)
    crl: CRLSettings = DEFAULT_CRL
    # The operator's URL as relying parties reach it (its metrics Service):
    # new leaves name <crl_url>/crl/<CA namespace>/<CA Secret>.crl as their
    # CRL Distribution Point. None: no distribution point.
    crl_url: str | None = None

    @property
    def ca_namespaces(self) -> tuple[str, ...]:
        """Where CA Secrets (and their revocation records) may be: the served
        namespaces and the cluster CA's; empty: all."""
        if not self.namespaces:
            return ()
        return tuple(dict.fromkeys((*self.namespaces, self.cluster_ca.namespace)))


class Operator:
    def __init__(
        self, config: OperatorConfig, login: Login, metrics: Metrics, clock: Clock | None = None
    ) -> None:
        self.config = config
        self._login = login
        clock = clock or SystemClock()
        self.runtime = Runtime(Kube(login, clock=clock), clock, metrics, workers=config.workers)
        self.authorities = AuthorityStore(self.runtime.cache, clock, metrics)
        self.tenancy = Tenancy(self.runtime, config.identity)
        self.policies = PolicyController(self.runtime, self.tenancy)
        self.revocations = Revocations(self.runtime.cache, self.runtime.kube, config.ca_namespaces)
        shared = SharedParts(self.runtime, self.authorities, self.tenancy, self.revocations)
        self.certificates = CertificateController(
            shared,
            Settings(
                cluster_ca=config.cluster_ca,
                min_duration=config.min_duration,
                namespaces=config.namespaces,
                reissue_rate=config.reissue_rate,
                crl_url=config.crl_url,
            ),
        )
        self._add_publishers(shared)
        self.runtime.add(self.policies)
        self.runtime.add(self.certificates)
        if config.workload_rolls:
            # Off, no workload is watched: the apps/v1 reads and patches need not be granted.
            self.runtime.add(
                WorkloadController(
                    self.runtime,
                    WorkloadSettings(
                        rate=config.workload_roll_rate,
                        burst=config.workload_roll_burst,
                        window=config.workload_roll_window,
                        namespaces=config.namespaces,
                        trust_bundle_configmaps=config.trust_bundle_namespaces is not None,
                    ),
                )
            )

    def _add_publishers(self, shared: SharedParts) -> None:
        """The trust bundles, the pod signer and the CRLs: before the certificates."""
        config = self.config
        signers = (CLUSTER_CA_SIGNER, *([config.pod_signer_name] if config.pod_signer else []))
        # First: its start-up confirms what is published before any leaf is signed.
        self.runtime.add(
            TrustBundleController(
                shared,
                TrustBundleSettings(config.cluster_ca, signers, config.trust_bundle_namespaces),
            )
        )
        if config.pod_signer:
            self.runtime.add(
                PodCertificateController(
                    shared,
                    PodSignerSettings(
                        cluster_ca=config.cluster_ca,
                        signer_name=config.pod_signer_name,
                        max_duration=config.pod_certificate_max_duration,
                        namespaces=config.namespaces,
                        crl_url=config.crl_url,
                    ),
                )
            )
        self.runtime.add(CRLController(shared, CRLSignerSettings(config.cluster_ca, config.crl)))

    def registry(self) -> kopf.OperatorRegistry:
        return build_registry(login=self._login, start=self.start, stop=self.stop)

    async def start(self) -> None:
        if self.config.bootstrap_ca:
            await ensure_cluster_ca(self.runtime.kube, self.config.cluster_ca, self.runtime.clock)
        # Every policy and namespace is known before the first certificate is judged.
        await self.tenancy.start()
        await self.runtime.start()

    def healthy(self) -> bool:
        return self.runtime.healthy()

    def problems(self) -> list[str]:
        return self.runtime.problems()

    def halt(self) -> None:
        """Stop every worker and watch at once (no write after this), without
        waiting: the Lease is lost and another replica may lead."""
        self.runtime.halt()

    async def stop(self) -> None:
        await self.runtime.stop()
        await self.certificates.close()
        await self.authorities.close()
        await self.runtime.kube.close()
