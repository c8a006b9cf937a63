"""A watch that goes silent without closing (a half-open connection, a
wedged load balancer) is noticed and opened again: the operator reaches the
API server through a proxy that silences every connection it carries, and
changes made after that are still acted on, within a stated bound."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from kubernetes import client

from mtls_operator.runtime.kube import WATCH_INACTIVITY_SECONDS

from operator_process import OperatorProcess
from support.cluster import (
    KubeCluster,
    certificate,
    create_certificate,
    get_secret,
    wait_for,
    wait_ready,
)
from support.stalling_proxy import StallingProxy

# A silent watch is given up after WATCH_INACTIVITY_SECONDS; a write caught
# on a silenced connection waits for its request timeout (30 s) at most.
BOUND = WATCH_INACTIVITY_SECONDS + 30


def upstream(kubeconfig: Path) -> tuple[str, int]:
    server = urlsplit(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
    assert server.hostname is not None
    assert server.port is not None
    return server.hostname, server.port


def proxied(kubeconfig: Path, port: int, directory: Path) -> Path:
    """A copy of `kubeconfig` that reaches the API server through 127.0.0.1:`port`."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = directory / "proxied-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def test_changes_after_every_connection_went_silent_are_acted_on(
    kube_cluster: KubeCluster,
    operator_process: OperatorProcess,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    operator_process.stop()  # the one below is the only operator
    with StallingProxy(upstream(kube_cluster.kubeconfig)) as proxy:
        kubeconfig = proxied(kube_cluster.kubeconfig, proxy.port, tmp_path)
        # Without leader election: a Lease lost on a silenced connection
        # would open new watches by itself and hide what is shown here.
        process = OperatorProcess(
            kubeconfig,
            tmp_path / "operator.log",
            [*operator_process.extra_args, "--no-leader-election"],
        )
        process.start()
        try:
            body = certificate("before", "server", dnsNames=[f"before.{namespace}.svc"])
            create_certificate(kube_api, namespace, body)
            wait_ready(kube_api, namespace, "before")
            time.sleep(2)  # every watch is open and idle
            silenced = proxy.stall()
            began = time.monotonic()

            # An MtlsCertificate (kopf's watch) and a deleted Secret (the operator's own).
            after = certificate("after", "server", dnsNames=[f"after.{namespace}.svc"])
            create_certificate(kube_api, namespace, after)
            client.CoreV1Api(kube_api).delete_namespaced_secret("before-tls", namespace)
            wait_ready(kube_api, namespace, "after", timeout=BOUND + 30)
            certificate_seen = time.monotonic() - began
            wait_for(
                lambda: get_secret(kube_api, namespace, "before-tls"),
                timeout=BOUND + 30,
                what="before-tls made again",
            )
            secret_seen = time.monotonic() - began
            print(
                f"{silenced} connections silenced: the new certificate Ready after"
                f" {certificate_seen:.1f} s, the deleted Secret back after {secret_seen:.1f} s"
                f" (bound {BOUND:.0f} s)"
            )
            # Without the inactivity bound the operator's own Secret watch
            # would wait for its read timeout (320 s before it was set).
            assert max(certificate_seen, secret_seen) < BOUND
        finally:
            process.stop()
