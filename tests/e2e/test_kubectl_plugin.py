"""`kubectl mtls ...` through kubectl's own plugin mechanism, with kubectl's
flags: a kubeconfig with two contexts, one of them current and unreachable,
so that only the one named by --context can answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e.plugin import kubectl_mtls
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.cluster import certificate, create_certificate, wait_ready

UNREACHABLE = "https://127.0.0.1:9"


@pytest.fixture
def two_contexts(operator: OperatorProcess, namespace: str, tmp_path: Path) -> Path:
    """`prod`: the cluster, with `namespace` as its namespace; `nowhere`
    (current): a server that does not answer."""
    config: dict[str, Any] = yaml.safe_load(operator.kubeconfig.read_text())
    cluster = config["clusters"][0]
    user = config["users"][0]["name"]
    config["clusters"] = [
        cluster,
        {"name": "nowhere", "cluster": {"server": UNREACHABLE, "insecure-skip-tls-verify": True}},
    ]
    config["contexts"] = [
        {
            "name": "prod",
            "context": {"cluster": cluster["name"], "user": user, "namespace": namespace},
        },
        {"name": "nowhere", "context": {"cluster": "nowhere", "user": user}},
    ]
    config["current-context"] = "nowhere"
    path = tmp_path / "two-contexts.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_kubectl_mtls_takes_kubectls_flags(
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    namespace: str,
    two_contexts: Path,
    tmp_path: Path,
) -> None:
    create_certificate(
        kube_api, namespace, certificate("web", "server", dnsNames=[f"web.{namespace}.svc"])
    )
    wait_ready(kube_api, namespace, "web")

    # The context's namespace is the default, as with kubectl get.
    status = kubectl_mtls(
        kubectl, tmp_path, "status", "--context", "prod", "-o", "yaml", kubeconfig=two_contexts
    )
    assert status.returncode == 0, status.stderr
    rows = yaml.safe_load(status.stdout)
    assert [(r["namespace"], r["name"], r["ready"]) for r in rows] == [(namespace, "web", "True")]

    # --kubeconfig instead of $KUBECONFIG; -o json; --all-namespaces.
    every = kubectl_mtls(
        kubectl,
        tmp_path,
        "status",
        "--kubeconfig",
        str(two_contexts),
        "--context",
        "prod",
        "-A",
        "-o",
        "json",
    )
    assert every.returncode == 0, every.stderr
    assert {"namespace": namespace, "name": "web"}.items() <= next(
        r for r in json.loads(every.stdout) if r["namespace"] == namespace
    ).items()

    wide = kubectl_mtls(
        kubectl, tmp_path, "status", "--context", "prod", "-o", "wide", kubeconfig=two_contexts
    )
    assert wide.returncode == 0, wide.stderr
    assert wide.stdout.splitlines()[0].split()[-4:] == [
        "SERIAL",
        "REVISION",
        "WORKLOADS",
        "MESSAGE",
    ]

    inspected = kubectl_mtls(
        kubectl,
        tmp_path,
        "inspect",
        "secret",
        "web-tls",
        "--context",
        "prod",
        "-o",
        "json",
        kubeconfig=two_contexts,
    )
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["chain"]["valid"] is True

    renewed = kubectl_mtls(
        kubectl, tmp_path, "renew", "web", "--context", "prod", kubeconfig=two_contexts
    )
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() == f"renewal requested for {namespace}/web"


def test_the_current_context_is_used_and_a_wrong_one_is_named(
    kubectl: Kubectl, two_contexts: Path, tmp_path: Path
) -> None:
    unreachable = kubectl_mtls(kubectl, tmp_path, "status", kubeconfig=two_contexts)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("mtls-operator: error: cannot reach the cluster: ")
    assert unreachable.stderr.count("\n") == 1

    unknown = kubectl_mtls(
        kubectl, tmp_path, "status", "--context", "staging", kubeconfig=two_contexts
    )
    assert unknown.returncode == 1
    assert unknown.stderr == (
        f"mtls-operator: error: --context staging: no such context "
        f"in {two_contexts} (it has: nowhere, prod)\n"
    )


def test_context_works_when_the_current_one_names_a_missing_cluster(
    kubectl: Kubectl, two_contexts: Path, namespace: str, tmp_path: Path
) -> None:
    """kubectl honours --context whatever the current context is: so does the plugin."""
    config: dict[str, Any] = yaml.safe_load(two_contexts.read_text())
    config["contexts"][1]["context"]["cluster"] = "deleted"
    config["clusters"] = config["clusters"][:1]
    broken = tmp_path / "broken-current.yaml"
    broken.write_text(yaml.safe_dump(config))

    listed = kubectl_mtls(kubectl, tmp_path, "status", "--context", "prod", kubeconfig=broken)
    assert listed.returncode == 0, listed.stderr
    assert kubectl("--kubeconfig", str(broken), "--context", "prod", "get", "ns", namespace)
