"""The operator installed with Helm, as its chart's README says, on a real node: the image
built from the Dockerfile given by the chart's image values, nothing else changed."""

from __future__ import annotations

from pathlib import Path

from localcluster import Kubectl, LocalCluster
from node.operator_pods import (
    OPERATOR_NAMESPACE,
    issue,
    leader_pod,
    pod_get,
    restart_counts,
    wait_operator_ready,
)
from support.chart import CHART, RELEASE, Helm
from support.scrape import value

NAMESPACE = "chart-tenant"


def test_helm_install_runs_the_operator_in_pods(
    node_cluster: LocalCluster, node_kubectl: Kubectl, tmp_path: Path
) -> None:
    helm = Helm(tmp_path / "helm-home", node_cluster.kubeconfig)
    # As the chart's README says: the release's namespace, labelled for Pod Security.
    node_kubectl("create", "namespace", OPERATOR_NAMESPACE)
    node_kubectl(
        "label",
        "namespace",
        OPERATOR_NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )
    try:
        helm(
            "install",
            RELEASE,
            str(CHART),
            "-n",
            OPERATOR_NAMESPACE,
            "--set",
            "image.repository=localhost/mtls-operator",
            "--set",
            "image.tag=dev",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "3m",
        )
        pods = wait_operator_ready(node_kubectl)
        assert restart_counts(pods) == {pod["metadata"]["name"]: 0 for pod in pods}
        leader = leader_pod(node_kubectl)
        node_kubectl("create", "namespace", NAMESPACE)
        issued = issue(node_kubectl, NAMESPACE, "from-chart", tmp_path)
        assert issued["status"]["revision"] == 1
        status, metrics = pod_get(leader, "/metrics")
        assert status == 200
        labels = {"namespace": NAMESPACE, "name": "from-chart", "secret": "from-chart-tls"}
        assert value(metrics, "mtls_operator_certificate_ready", **labels) == 1.0
    finally:
        helm("uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, "--wait", check=False)
        node_kubectl(
            "delete",
            "namespace",
            NAMESPACE,
            OPERATOR_NAMESPACE,
            "--wait=true",
            "--ignore-not-found",
            timeout=180,
        )
