"""Two replicas against one cluster: only the Lease holder works, every
certificate is issued exactly once, and killing the active replica lets the
standby take over and finish."""

from __future__ import annotations

import concurrent.futures
import re
from pathlib import Path
from typing import Any

from kubernetes import client

from e2e.support import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    create_certificate,
    events,
    plain,
    wait_for,
)
from localcluster import Kubectl
from operator_process import OperatorProcess

COUNT = 100


def secret_writes(kubectl: Kubectl) -> dict[str, int]:
    """Write requests on Secrets the API server has answered, by verb."""
    totals: dict[str, int] = {}
    for line in kubectl("get", "--raw", "/metrics", timeout=120).stdout.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="secrets"' in line:
            verb = re.search(r'verb="(\w+)"', line)
            if verb and verb.group(1) in ("POST", "PUT", "PATCH", "DELETE"):
                totals[verb.group(1)] = totals.get(verb.group(1), 0) + int(
                    float(line.rsplit(" ", 1)[1])
                )
    return totals


def metric(operator: OperatorProcess, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in operator.metrics().splitlines()
        if line.startswith(name)
    )


def ready_count(api: client.ApiClient, namespace: str) -> int:
    listed: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "mtls.dev", "v1alpha1", namespace, "mtlscertificates"
    )
    ready = 0
    for item in listed["items"]:
        conditions = (item.get("status") or {}).get("conditions", [])
        ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready


def test_two_replicas_issue_each_certificate_once_and_fail_over(
    operator_process: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    operator_process.stop()  # the two replicas below are the only operators
    args = [
        "--all-namespaces",
        "--bootstrap-ca",
        "--cluster-ca-secret",
        f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
        "--min-duration",
        "10s",
    ]
    replicas = [
        OperatorProcess(operator_process.kubeconfig, tmp_path / f"replica-{i}.log", args)
        for i in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        leader = wait_for(
            lambda: next((r for r in replicas if metric(r, "mtls_operator_leader") == 1.0), None),
            timeout=30,
            what="a leader",
        )
        standby = next(r for r in replicas if r is not leader)
        assert metric(standby, "mtls_operator_leader") == 0.0

        before = secret_writes(kubectl)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: create_certificate(
                        kube_api,
                        namespace,
                        certificate(f"ha-{i}", "server", commonName=f"ha-{i}.example"),
                    ),
                    range(COUNT),
                )
            )
            wait_for(
                lambda: ready_count(kube_api, namespace) >= COUNT // 3 or None,
                timeout=60,
                interval=0.05,
                what="a third Ready",
            )
        assert metric(standby, "mtls_issuance_total") == 0, "the standby must not issue"
        leader.kill()
        assert ready_count(kube_api, namespace) < COUNT, "the kill should land mid-burst"
        wait_for(
            lambda: metric(standby, "mtls_operator_leader") == 1.0 or None,
            timeout=30,
            interval=0.5,
            what="the standby to take the Lease",
        )
        wait_for(
            lambda: ready_count(kube_api, namespace) == COUNT or None,
            timeout=120,
            interval=0.5,
            what="the standby to finish",
        )
        assert metric(standby, "mtls_issuance_total") > 0, "the standby finished the burst"
        after = secret_writes(kubectl)
    finally:
        for replica in replicas:
            replica.stop()

    writes = {
        verb: after.get(verb, 0) - before.get(verb, 0)
        for verb in ("POST", "PUT", "PATCH", "DELETE")
    }
    assert writes == {"POST": COUNT, "PUT": 0, "PATCH": 0, "DELETE": 0}, writes
    secrets = plain(kube_api, client.CoreV1Api(kube_api).list_namespaced_secret(namespace))["items"]
    assert len(secrets) == COUNT
    assert {s["metadata"]["annotations"]["mtls.dev/revision"] for s in secrets} == {"1"}
    for index in range(0, COUNT, 10):
        reasons = [(e["type"], e["reason"]) for e in events(kube_api, namespace, f"ha-{index}")]
        assert ("Warning", "IssuanceFailed") not in reasons
        assert reasons.count(("Normal", "Issued")) <= 1, reasons
