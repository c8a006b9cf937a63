"""What every scenario runs on: a fresh control plane with the CRDs, a
client, the operator as a process, and bursts of MtlsCertificates."""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Any

from mtls_operator.api.resources import certificates_path
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.login import default_login

from bench.parallel import CONCURRENCY, in_parallel
from bench.paths import ROOT, WORK
from localcluster import Kubectl, LocalCluster, control_plane_bin_dir
from operator_process import OperatorProcess

OPERATOR_NAMESPACE = "mtls-operator"
CLUSTER_CA = f"{OPERATOR_NAMESPACE}/mtls-operator-ca"


def certificate(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "usage": "server",
            "commonName": f"{name}.{namespace}.svc",
            "dnsNames": [f"{name}.{namespace}.svc.cluster.local"],
            **spec,
        },
    }


def burst_names(prefix: str, count: int) -> set[str]:
    """The names `Stage.create` and the bare client give a burst's objects."""
    return {f"{prefix}-{index}" for index in range(count)}


class Stage:
    """A fresh control plane with the CRDs and namespaces, a client, and an
    operator (not started) with the given flags."""

    def __init__(self, name: str, namespaces: list[str], operator_args: list[str]) -> None:
        bin_dir = control_plane_bin_dir()
        WORK.mkdir(exist_ok=True)
        self.cluster = LocalCluster.start(WORK / f"cluster-{name}", bin_dir)
        os.environ["KUBECONFIG"] = str(self.cluster.kubeconfig)
        self.kubectl = Kubectl(
            bin_dir / "kubectl", self.cluster.kubeconfig, cache_dir=WORK / "kubectl-cache"
        )
        self.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
        for crd in ("mtlscertificates.mtls.dev", "mtlspolicies.mtls.dev"):
            self.kubectl("wait", "--for=condition=Established", f"crd/{crd}")
        for namespace in [OPERATOR_NAMESPACE, *namespaces]:
            self.kubectl("create", "namespace", namespace)
        self.kube = Kube(default_login, max_connections=CONCURRENCY * 2)
        log = WORK / f"operator-{name}.log"
        log.unlink(missing_ok=True)
        self.operator = OperatorProcess(
            self.cluster.kubeconfig,
            log,
            ["--bootstrap-ca", "--cluster-ca-secret", CLUSTER_CA, *operator_args],
        )

    def create(self, namespace: str, count: int, prefix: str, **spec: Any) -> Awaitable[float]:
        return in_parallel(
            count,
            lambda i: self.kube.create(
                certificates_path(namespace), certificate(f"{prefix}-{i}", namespace, **spec)
            ),
        )

    async def close(self) -> None:
        self.operator.stop()
        await self.kube.close()
        self.cluster.stop()
