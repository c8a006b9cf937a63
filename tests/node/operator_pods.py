"""The operator as users run it, seen through kubectl: its pods, its Lease, the certificates it
issues, and its metrics read from the pod's own address."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from localcluster import REPO_ROOT, Kubectl
from recipe_checks import openssl_verify
from support.cluster import mount, wait_for

OPERATOR_NAMESPACE = "mtls-operator"
# What the node tests install: deploy/ with the image built here.
OVERLAY = REPO_ROOT / "deploy" / "overlays" / "local"
SELECTOR = "app.kubernetes.io/name=mtls-operator,app.kubernetes.io/component=controller"
LEASE = "mtls-operator"
METRICS_PORT = 8080
# Direct connections to pod addresses: no proxy in between.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def operator_pods(kubectl: Kubectl, namespace: str = OPERATOR_NAMESPACE) -> list[dict[str, Any]]:
    """The operator's pods that are not being deleted, oldest first."""
    pods = get_json(kubectl, "pods", "-n", namespace, "-l", SELECTOR)["items"]
    live = [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]
    return sorted(live, key=lambda pod: pod["metadata"]["creationTimestamp"])


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def wait_operator_ready(
    kubectl: Kubectl, replicas: int = 2, namespace: str = OPERATOR_NAMESPACE, timeout: float = 180
) -> list[dict[str, Any]]:
    """The operator's pods once `replicas` of them pass their readiness probe."""

    def ready() -> list[dict[str, Any]] | None:
        pods = [pod for pod in operator_pods(kubectl, namespace) if is_ready(pod)]
        return pods if len(pods) == replicas else None

    return wait_for(ready, timeout=timeout, interval=1.0, what=f"{replicas} operator pods Ready")


def lease_holder(kubectl: Kubectl, namespace: str = OPERATOR_NAMESPACE) -> str | None:
    found = kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    holder = json.loads(found.stdout).get("spec", {}).get("holderIdentity")
    return str(holder) if holder else None


def leader_pod(kubectl: Kubectl, namespace: str = OPERATOR_NAMESPACE) -> dict[str, Any]:
    """The pod holding the Lease: its identity is the pod's name and a random part."""

    def leader() -> dict[str, Any] | None:
        holder = lease_holder(kubectl, namespace)
        pods = operator_pods(kubectl, namespace)
        found = [pod for pod in pods if holder and holder.startswith(pod["metadata"]["name"] + "-")]
        return found[0] if found else None

    return wait_for(leader, timeout=60, interval=0.5, what="a pod holding the Lease")


def pod_get(pod: dict[str, Any], path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET on the pod's own address (the node's pod network), as Prometheus scrapes it."""
    url = f"http://{pod['status']['podIP']}:{METRICS_PORT}{path}"
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def issue(
    kubectl: Kubectl, namespace: str, name: str, directory: Path, timeout: float = 60
) -> dict[str, Any]:
    """Apply a server certificate for a name the namespace owns, wait until it is Ready, and
    check its Secret with `openssl verify`; returns the certificate."""
    certificate = {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": f"{name}-tls",
            "usage": "server",
            "dnsNames": [f"{name}.{namespace}.svc"],
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(certificate))
    kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        f"mtlscertificate/{name}",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 10,
    )
    secret = get_json(kubectl, "secret", f"{name}-tls", "-n", namespace)
    files = mount(
        {key: base64.b64decode(value) for key, value in secret["data"].items()},
        directory / name,
    )
    verified = openssl_verify(files / "ca.crt", files / "tls.crt")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    body: dict[str, Any] = get_json(kubectl, "mtlscertificate", name, "-n", namespace)
    return body


def seconds_to_ready(kubectl: Kubectl, namespace: str, name: str, directory: Path) -> float:
    started = time.monotonic()
    issue(kubectl, namespace, name, directory)
    return time.monotonic() - started


def restart_counts(pods: list[dict[str, Any]]) -> dict[str, int]:
    return {
        pod["metadata"]["name"]: sum(
            status.get("restartCount", 0) for status in pod["status"].get("containerStatuses", [])
        )
        for pod in pods
    }
