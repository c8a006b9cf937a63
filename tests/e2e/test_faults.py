"""Faults of the control plane and of the operator, each while a burst of
200 issuances is in flight: afterwards every certificate is Ready, every
Secret verifies with openssl, each was issued exactly once, no managed
Secret is lost and no Secret the operator does not own was touched. Each
prints how long recovery took."""

from __future__ import annotations

import base64
import concurrent.futures
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client

from mtls_operator.api.managed_secret import REVISION_ANNOTATION

from localcluster import LocalCluster
from operator_process import OperatorProcess
from recipe_checks import openssl_verify
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    KubeCluster,
    certificate,
    create_certificate,
    plain,
    wait_for,
)

BURST = 200
MANAGED = "app.kubernetes.io/managed-by=mtls-operator"


@pytest.fixture
def cluster(kube_cluster: KubeCluster) -> LocalCluster:
    if kube_cluster.local is None:
        pytest.skip("faults are injected into the local control plane only")
    return kube_cluster.local


# What a client sees while the API server is down or frozen.
UNAVAILABLE = (client.exceptions.ApiException, urllib3.exceptions.HTTPError, OSError)


@dataclass
class Burst:
    """BURST certificates applied from another thread while a fault lands,
    and the checks of what they became."""

    api: client.ApiClient
    namespace: str
    started: float = 0.0

    def start(self) -> concurrent.futures.Future[None]:
        self.started = time.monotonic()
        pool = concurrent.futures.ThreadPoolExecutor(1)
        future = pool.submit(self._apply)
        pool.shutdown(wait=False)
        return future

    def _apply(self) -> None:
        def one(index: int) -> None:
            name = f"burst-{index}"
            body = certificate(name, "server", dnsNames=[f"{name}.{self.namespace}.svc"])
            for _ in range(120):  # the API server may be down for a while
                try:
                    create_certificate(self.api, self.namespace, body)
                    return
                except UNAVAILABLE as err:
                    if getattr(err, "status", None) == 409:  # made before a lost answer
                        return
                time.sleep(0.5)
            raise AssertionError(f"{name} could not be created")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(BURST)))

    def ready(self) -> int:
        try:
            listed: Any = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
                "mtls.dev", "v1alpha1", self.namespace, "mtlscertificates"
            )
        except UNAVAILABLE:
            return 0
        return sum(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (item.get("status") or {}).get("conditions", [])
            )
            for item in listed["items"]
        )

    def wait_for_some(self, count: int) -> None:
        wait_for(
            lambda: self.ready() >= count or None, timeout=60, interval=0.05, what=f"{count} Ready"
        )

    def check(self, foreign: dict[str, Any], fault_ended: float, tmp: Path, what: str) -> None:
        wait_for(
            lambda: self.ready() == BURST or None,
            timeout=240,
            interval=0.5,
            what=f"all {BURST} Ready after {what}",
        )
        recovered = time.monotonic() - fault_ended
        core = client.CoreV1Api(self.api)
        secrets = plain(
            self.api, core.list_namespaced_secret(self.namespace, label_selector=MANAGED)
        )
        assert len(secrets["items"]) == BURST, "no managed Secret lost, none made twice"
        revisions = {s["metadata"]["annotations"][REVISION_ANNOTATION] for s in secrets["items"]}
        assert revisions == {"1"}, f"each certificate issued exactly once: revisions {revisions}"
        for secret in secrets["items"]:
            for key in ("ca.crt", "tls.crt"):
                (tmp / key).write_bytes(base64.b64decode(secret["data"][key]))
            verified = openssl_verify(tmp / "ca.crt", tmp / "tls.crt")
            assert verified.returncode == 0, (secret["metadata"]["name"], verified.stdout)
        after = plain(self.api, core.read_namespaced_secret("not-ours", self.namespace))
        assert after["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
        assert after["data"] == foreign["data"]
        print(
            f"{what}: all {BURST} Ready {recovered:.1f} s after the fault ended"
            f" ({time.monotonic() - self.started:.1f} s after the burst began)"
        )


def foreign_secret(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="not-ours"), string_data={"k": "v"}),
    )
    return plain(api, core.read_namespaced_secret("not-ours", namespace))


def run_fault(
    api: client.ApiClient, namespace: str, tmp_path: Path, what: str, fault: Callable[[Burst], None]
) -> None:
    foreign = foreign_secret(api, namespace)
    burst = Burst(api, namespace)
    applying = burst.start()
    fault(burst)
    fault_ended = time.monotonic()
    applying.result(timeout=300)
    burst.check(foreign, fault_ended, tmp_path, what)


def test_kube_apiserver_restarts(
    operator: OperatorProcess,
    cluster: LocalCluster,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    def fault(burst: Burst) -> None:
        burst.wait_for_some(30)
        cluster.restart_apiserver()

    run_fault(kube_api, namespace, tmp_path, "kube-apiserver restarted", fault)


def test_etcd_stops_for_20_seconds(
    operator: OperatorProcess,
    cluster: LocalCluster,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    def fault(burst: Burst) -> None:
        burst.wait_for_some(30)
        cluster.freeze("etcd")
        try:
            time.sleep(20)
        finally:
            cluster.thaw("etcd")

    run_fault(kube_api, namespace, tmp_path, "etcd stopped 20 s", fault)


def test_the_api_server_is_unreachable_for_30_seconds(
    operator: OperatorProcess,
    cluster: LocalCluster,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    def fault(burst: Burst) -> None:
        burst.wait_for_some(30)
        cluster.freeze("kube-apiserver")
        try:
            time.sleep(30)
        finally:
            cluster.thaw("kube-apiserver")

    run_fault(kube_api, namespace, tmp_path, "kube-apiserver frozen 30 s", fault)
    # Losing the Lease on the way is not death: the same process leads again.
    assert operator.running
    assert "campaigning again" in operator.log()


def test_the_operator_is_killed_three_times_in_a_row(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    def fault(burst: Burst) -> None:
        for count in (20, 60, 100):
            burst.wait_for_some(count)
            operator.kill()
            operator.start()

    run_fault(kube_api, namespace, tmp_path, "operator SIGKILLed three times", fault)


@pytest.fixture
def replicas(operator_process: OperatorProcess, tmp_path: Path) -> Iterator[list[OperatorProcess]]:
    operator_process.stop()  # the pair below are the only operators
    args = [
        "--all-namespaces",
        "--cluster-ca-secret",
        f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
    ]
    pair = [
        OperatorProcess(operator_process.kubeconfig, tmp_path / f"replica-{i}.log", args)
        for i in range(2)
    ]
    yield pair
    for replica in pair:
        replica.stop()


def test_both_replicas_of_a_pair_are_killed_at_once(
    replicas: list[OperatorProcess], kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    for replica in replicas:
        replica.start()

    def fault(burst: Burst) -> None:
        burst.wait_for_some(40)
        for replica in replicas:
            replica.kill()
        for replica in replicas:
            replica.start()

    run_fault(kube_api, namespace, tmp_path, "both replicas SIGKILLed", fault)
