"""Two replicas against one cluster: only the Lease holder works, every
certificate is issued exactly once, and killing the active replica lets the
standby take over and finish."""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    create_certificate,
    events,
    plain,
    wait_for,
)
from support.scrape import total

COUNT = 100


def secrets_version(api: client.ApiClient, namespace: str) -> str:
    listed = plain(api, client.CoreV1Api(api).list_namespaced_secret(namespace))
    return str(listed["metadata"]["resourceVersion"])


def secret_writes_since(api: client.ApiClient, namespace: str, version: str) -> Counter[str]:
    """Every change to the namespace's Secrets after `version`, by kind of
    event: each write the API server accepted is exactly one event."""
    counted: Counter[str] = Counter()
    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
        client.CoreV1Api(api).list_namespaced_secret,
        namespace,
        resource_version=version,
        timeout_seconds=3,
    )
    for event in stream:
        counted[event["type"]] += 1
    return counted


def metric(operator: OperatorProcess, name: str) -> float:
    return total(operator.metrics(), name)


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

        before = secrets_version(kube_api, namespace)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: create_certificate(
                        kube_api,
                        namespace,
                        # RSA keys take long enough that the kill lands mid-burst.
                        certificate(
                            f"ha-{i}",
                            "server",
                            commonName=f"ha-{i}.example",
                            privateKey={"algorithm": "RSA", "size": 3072},
                        ),
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
        assert metric(standby, "mtls_operator_issuances_total") == 0, "the standby must not issue"
        leader.kill()
        time.sleep(0.5)  # a request the leader sent just before may still land
        issued_by_leader = len(client.CoreV1Api(kube_api).list_namespaced_secret(namespace).items)
        assert issued_by_leader < COUNT, "the kill should land mid-burst"
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
        # The standby issues exactly what the leader had not: Secrets the
        # leader wrote but did not report Ready are completed, not issued again.
        assert (
            total(standby.metrics(), "mtls_operator_issuances_total", result="success")
            == COUNT - issued_by_leader
        )
        writes = secret_writes_since(kube_api, namespace, before)
    finally:
        for replica in replicas:
            replica.stop()

    assert writes == Counter({"ADDED": COUNT}), writes
    secrets = plain(kube_api, client.CoreV1Api(kube_api).list_namespaced_secret(namespace))["items"]
    assert len(secrets) == COUNT
    assert {s["metadata"]["annotations"]["mtls.dev/revision"] for s in secrets} == {"1"}
    for index in range(0, COUNT, 10):
        reasons = [(e["type"], e["reason"]) for e in events(kube_api, namespace, f"ha-{index}")]
        assert ("Warning", "IssuanceFailed") not in reasons
        assert reasons.count(("Normal", "Issued")) <= 1, reasons
