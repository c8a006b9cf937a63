"""Fixtures for tests that need a real Kubernetes API server.

By default one local control plane (hack/localcluster.py) serves the whole session. Set
MTLS_TEST_KUBECONFIG to run against an existing cluster instead; it is never started or
stopped by the tests then.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from e2e.crd import apply_crd
from localcluster import Kubectl, LocalCluster, control_plane_bin_dir, kubectl_binary
from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    TEST_NAME_POLICY,
    TEST_NAMES_LABEL,
    TRUST_BUNDLE_LABEL,
    KubeCluster,
    namespace_name,
)

E2E_DIR = Path(__file__).resolve().parent
KUBECONFIG_ENV = "MTLS_TEST_KUBECONFIG"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    existing = os.environ.get(KUBECONFIG_ENV)
    if existing:
        yield KubeCluster(Path(existing).resolve(), kubectl_binary(), None)
        return
    state_dir = tmp_path_factory.mktemp("cluster")
    cluster = LocalCluster.start(state_dir, control_plane_bin_dir())
    try:
        yield KubeCluster(cluster.kubeconfig, cluster.bin_dir / "kubectl", cluster)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kubectl(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """`kubectl(*args, input=None, check=True)` against the test cluster."""
    return Kubectl(
        kube_cluster.kubectl,
        kube_cluster.kubeconfig,
        cache_dir=tmp_path_factory.mktemp("kubectl-cache"),
    )


@pytest.fixture(scope="session")
def test_name_grants(kubectl: Kubectl, mtls_crd: None) -> None:
    """The MtlsPolicy that lets test namespaces hold the example names the
    issuance tests use (the identity tests make namespaces of their own)."""
    kubectl("apply", "-f", "-", input=json.dumps(TEST_NAME_POLICY))


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, kubectl: Kubectl, test_name_grants: None
) -> Iterator[str]:
    name = namespace_name(request.node.name)
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, f"{TEST_NAMES_LABEL}=true")
    yield name
    # Not waiting: the namespace controller finishes the deletion in the background.
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def kube_api(kube_cluster: KubeCluster) -> Iterator[client.ApiClient]:
    # kubernetes.config has no type annotations.
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kube_cluster.kubeconfig)
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def mtls_crd(kubectl: Kubectl) -> None:
    apply_crd(kubectl)


@pytest.fixture(scope="session")
def operator_process(
    kube_cluster: KubeCluster,
    kubectl: Kubectl,
    mtls_crd: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """One operator for the session, serving every namespace, with a
    bootstrapped cluster CA and a minimum duration short enough for renewal tests."""
    kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    process = OperatorProcess(
        kube_cluster.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        [
            "--all-namespaces",
            "--bootstrap-ca",
            "--cluster-ca-secret",
            f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
            "--min-duration",
            "10s",
            "--trust-bundle-namespace-selector",
            f"{TRUST_BUNDLE_LABEL}=true",
        ],
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def operator(operator_process: OperatorProcess) -> OperatorProcess:
    """The session operator, running (a test before may have stopped it)."""
    if not operator_process.running:
        operator_process.start()
    return operator_process
