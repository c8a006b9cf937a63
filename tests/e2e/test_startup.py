"""Start-up that explains itself: what the cluster lacks (a namespace, a
CRD, a permission) stops `mtls-operator run` at once, with a non-zero exit
and one line that says what is wrong and what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e.crd import apply_crd
from localcluster import Kubectl
from support.cluster import CLUSTER_CA_SECRET, OPERATOR_NAMESPACE, TEST_NAME_POLICY, KubeCluster

CA = f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}"


@pytest.fixture(autouse=True)
def operator_namespace(kubectl: Kubectl, mtls_crd: None) -> None:
    """Where the cluster CA lives: only what a test takes away is missing."""
    kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)


def run_operator(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mtls-operator run` to its end: it must stop by itself, well within a minute."""
    command = str(Path(sys.executable).parent / "mtls-operator")
    return subprocess.run(
        [command, "run", "--metrics-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        check=False,
    )


def refusals(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, result.stdout + result.stderr
    return [line for line in (result.stdout + result.stderr).splitlines() if "cannot start" in line]


def test_a_missing_lease_namespace_is_named_with_what_to_do(kube_cluster: KubeCluster) -> None:
    result = run_operator(
        kube_cluster.kubeconfig, "--cluster-ca-secret", CA, "--lease-namespace", "no-such-ns"
    )
    [line] = refusals(result)
    assert "namespace no-such-ns (the Lease's) does not exist" in line
    assert "kubectl create namespace no-such-ns" in line
    assert "--no-leader-election" in line


def test_a_missing_ca_namespace_and_served_namespace_are_named(kube_cluster: KubeCluster) -> None:
    result = run_operator(
        kube_cluster.kubeconfig,
        "--cluster-ca-secret",
        "no-ca-ns/cluster-ca",
        "--namespace",
        "no-app-ns",
        "--no-leader-election",
    )
    lines = refusals(result)
    assert len(lines) == 2, lines
    assert "namespace no-app-ns (--namespace) does not exist" in lines[0]
    assert "namespace no-ca-ns (the cluster CA's) does not exist" in lines[1]


def service_account_kubeconfig(
    kube_cluster: KubeCluster, kubectl: Kubectl, namespace: str, directory: Path
) -> Path:
    """A kubeconfig for a new ServiceAccount that nothing is bound to."""
    kubectl("create", "serviceaccount", "unbound", "-n", namespace)
    token = kubectl("create", "token", "unbound", "-n", namespace).stdout.strip()
    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def test_missing_permissions_are_listed_with_the_roles_to_bind(
    kube_cluster: KubeCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = service_account_kubeconfig(kube_cluster, kubectl, namespace, tmp_path)
    result = run_operator(
        kubeconfig, "--cluster-ca-secret", CA, "--namespace", namespace, "--no-leader-election"
    )
    [line] = refusals(result)
    assert "the operator may not " in line
    assert f"list mtlscertificates.mtls.dev in {namespace}" in line
    assert "bind the ClusterRoles of deploy/base/rbac.yaml" in line


def test_a_crd_the_api_server_does_not_serve_is_named(
    kube_cluster: KubeCluster, kubectl: Kubectl
) -> None:
    kubectl("delete", "crd", "mtlspolicies.mtls.dev", "--wait=true")
    try:
        result = run_operator(kube_cluster.kubeconfig, "--cluster-ca-secret", CA)
        [line] = refusals(result)
        assert "the API server does not serve mtlspolicies.mtls.dev" in line
        assert "kubectl apply -k crds/" in line
    finally:
        apply_crd(kubectl)
        kubectl("apply", "-f", "-", input=json.dumps(TEST_NAME_POLICY))
