"""The example application on the node, through renewals, a rotation of the cluster CA and a
withdrawn identity: checkout calls payments every 2 s and counts its handshakes (its /stats),
each one verified against the files its pod mounts at that moment; no handshake may fail. The
times from each write to the moment a pod used what was written are printed. During the
rotation, a pod mounting the trust bundle as a ClusterTrustBundle and as the ConfigMap
`mtls-ca-bundle` is sampled: every live certificate chains to a root of each, at every sample.

The node's kubelet runs with its default syncFrequency (1m): a Secret's change reaches a pod
after 1 to 1.5 of it, and `ca rotate` waits that long between steps, read from the node."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from localcluster import REPO_ROOT, Kubectl, LocalCluster
from node.operator_pods import OPERATOR_NAMESPACE, get_json
from node.sleeper import sleeper_pod
from support.cluster import wait_for

EXAMPLES = REPO_ROOT / "deploy" / "overlays" / "local" / "examples"
NAMESPACE = "demo"
COMMAND = str(Path(sys.executable).parent / "mtls-operator")
# The kubelet's default syncFrequency x 1.5, and some.
PROPAGATION_SECONDS = 120
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
TRUST_LABEL = "mtls.dev/trust=true"
# A pod that mounts the cluster CA's trust bundle both ways the operator publishes it.
TRUST_FILES = {
    "clusterTrustBundle": "/var/run/trust/bundle/roots.pem",
    "mtls-ca-bundle": "/var/run/trust/configmap/ca.crt",
}
TRUST_POD = sleeper_pod(
    NAMESPACE,
    "trust",
    {"bundle": "/var/run/trust/bundle", "configmap": "/var/run/trust/configmap"},
    [
        {
            "name": "bundle",
            "projected": {
                "sources": [
                    {
                        "clusterTrustBundle": {
                            "signerName": "mtls.dev/cluster-ca",
                            "labelSelector": {"matchLabels": {"mtls.dev/trust-bundle": "roots"}},
                            "path": "roots.pem",
                        }
                    }
                ]
            },
        },
        {"name": "configmap", "configMap": {"name": "mtls-ca-bundle"}},
    ],
)


@dataclass(frozen=True)
class App:
    kubectl: Kubectl
    kubeconfig: Path

    def pods(self, name: str) -> list[dict[str, Any]]:
        found = get_json(
            self.kubectl, "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/name={name}"
        )
        return [
            pod
            for pod in found["items"]
            if not pod["metadata"].get("deletionTimestamp") and pod["status"].get("podIP")
        ]

    def stats(self) -> dict[str, dict[str, Any]]:
        """Each checkout pod's counts of handshakes and failures, and the last server serial."""
        found = {}
        for pod in self.pods("checkout"):
            url = f"http://{pod['status']['podIP']}:8080/stats"
            with _DIRECT.open(url, timeout=5) as response:
                found[pod["metadata"]["name"]] = json.loads(response.read())
        return found

    def serial(self, certificate: str) -> int:
        status = get_json(self.kubectl, "mtlscertificate", certificate, "-n", NAMESPACE)["status"]
        return int(status["serialNumber"], 16)

    def clients_see(self, server_serial: int) -> bool:
        """Every checkout pod's last call was answered with this server certificate."""
        return all(
            int(s["last_server_serial"] or "0", 16) == server_serial for s in self.stats().values()
        )

    def mtls(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        where = ["--kubeconfig", str(self.kubeconfig)]
        return subprocess.run(
            [COMMAND, *args, *where], capture_output=True, text=True, timeout=timeout, check=False
        )

    def server_saw(self, client_serial: int) -> bool:
        for pod in self.pods("payments"):
            log = self.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"]).stdout
            requests = [json.loads(line) for line in log.splitlines() if '"request"' in line]
            if any(int(request["serial"], 16) == client_serial for request in requests):
                return True
        return False


@pytest.fixture(scope="module")
def app(node_cluster: LocalCluster, node_kubectl: Kubectl, operator_installed: float) -> App:
    node_kubectl("create", "namespace", NAMESPACE)
    node_kubectl("label", "namespace", NAMESPACE, TRUST_LABEL)
    node_kubectl("apply", "--server-side", "-k", str(EXAMPLES))
    node_kubectl("rollout", "status", "-n", NAMESPACE, "deployment/payments", "--timeout=120s")
    running = App(node_kubectl, node_cluster.kubeconfig)
    # No cluster DNS on the node: checkout dials one payments pod, and checks
    # payments.demo.svc in its certificate.
    address = running.pods("payments")[0]["status"]["podIP"]
    node_kubectl(
        "set", "env", "-n", NAMESPACE, "deployment/checkout", f"PAYMENTS_CONNECT_TO={address}"
    )
    node_kubectl("rollout", "status", "-n", NAMESPACE, "deployment/checkout", "--timeout=120s")

    def calling() -> dict[str, dict[str, Any]] | None:
        stats = running.stats()
        ready = len(stats) == 2 and all(s["handshakes"] >= 2 for s in stats.values())
        return stats if ready else None

    wait_for(calling, timeout=60, interval=1, what="both checkout pods calling payments")
    return running


def _renewed_and_used(app: App, certificate: str, used: Callable[[int], bool]) -> float:
    """`kubectl mtls renew`, then the seconds until the pods used the new certificate."""
    old = app.serial(certificate)
    renewed = app.mtls("renew", certificate, "-n", NAMESPACE)
    assert renewed.returncode == 0, renewed.stderr
    written = time.monotonic()
    new = wait_for(
        lambda: (serial := app.serial(certificate)) != old and serial,
        timeout=30,
        what=f"{certificate} re-issued",
    )
    wait_for(
        lambda: used(new),
        timeout=PROPAGATION_SECONDS,
        interval=1,
        what=f"the pods using {certificate}'s new certificate",
    )
    return time.monotonic() - written


class TrustSampler:
    """Samples, every few seconds until stopped, the roots the trust pod has mounted, then the
    certificates live in the namespace: each must chain to a root of each mounted bundle."""

    def __init__(self, kubectl: Kubectl) -> None:
        self.kubectl = kubectl
        self.samples = 0
        self.failures: list[str] = []
        self.roots_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TrustSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.wait(3):
            try:
                self._sample()
            except Exception as err:  # reported by the test, which reads `failures`
                self.failures.append(f"sampling failed: {err}")

    def _sample(self) -> None:
        bundles = {name: self._mounted(path) for name, path in TRUST_FILES.items()}
        secrets = get_json(
            self.kubectl,
            "secrets",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/managed-by=mtls-operator",
        )["items"]
        for secret in secrets:
            leaf = x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))[0]
            for name, roots in bundles.items():
                if not any(_issued_by(leaf, root) for root in roots):
                    self.failures.append(
                        f"{secret['metadata']['name']} ({leaf.issuer.rfc4514_string()}) "
                        f"chains to no root of {name}"
                    )
        for roots in bundles.values():
            self.roots_seen |= {root.subject.rfc4514_string() for root in roots}
        self.samples += 1

    def _mounted(self, path: str) -> list[x509.Certificate]:
        pem = self.kubectl("exec", "-n", NAMESPACE, "trust", "--", "cat", path).stdout
        return x509.load_pem_x509_certificates(pem.encode())


def _issued_by(leaf: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _failures(app: App) -> dict[str, int]:
    return {name: stats["failures"] for name, stats in app.stats().items()}


def test_renewals_reach_the_pods_without_a_failed_handshake(app: App) -> None:
    before = app.stats()
    server_seen = _renewed_and_used(app, "payments", app.clients_see)
    client_seen = _renewed_and_used(app, "checkout", app.server_saw)
    after = app.stats()
    print(
        f"renewal seen in the pods: server {server_seen:.0f} s, client {client_seen:.0f} s "
        f"after the write; handshakes {sum(s['handshakes'] for s in after.values())}"
    )
    assert {name: s["failures"] for name, s in after.items()} == {
        name: s["failures"] for name, s in before.items()
    }
    assert set(_failures(app).values()) == {0}


def test_a_cluster_ca_rotation_fails_no_handshake(
    app: App, node_kubectl: Kubectl, tmp_path: Path
) -> None:
    # Pod certificates of the old CA would outlive the rotation's last step, which here does
    # not wait for the kubelets to renew them (--pod-cert-max-duration 0s).
    node_kubectl("delete", "namespace", "shop", "--ignore-not-found", "--wait=true", timeout=120)
    new_ca = tmp_path / "new-ca"
    offline = [COMMAND, "ca", "init", "--out", str(new_ca), "--common-name", "Rotated CA"]
    subprocess.run(offline, capture_output=True, check=True)
    bundle = ("get", "configmap", "mtls-ca-bundle", "-n", NAMESPACE)
    wait_for(
        lambda: node_kubectl(*bundle, check=False).returncode == 0,
        timeout=30,
        what="the trust bundle ConfigMap in the labelled namespace",
    )
    node_kubectl("apply", "-f", "-", input=json.dumps(TRUST_POD))
    node_kubectl("wait", "-n", NAMESPACE, "pod/trust", "--for=condition=Ready", "--timeout=120s")
    started = time.monotonic()
    with TrustSampler(node_kubectl) as trust:
        rotated = app.mtls(
            "ca",
            "rotate",
            "mtls-operator-ca",
            "-n",
            OPERATOR_NAMESPACE,
            "--cluster-ca",
            "--new-ca-dir",
            str(new_ca),
            "--pod-cert-max-duration",
            "0s",
            "--timeout",
            "10m",
            timeout=900,
        )
        took = time.monotonic() - started
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "syncFrequency 1m" in rotated.stdout, rotated.stdout
    new_server = app.serial("payments")
    issuer = get_json(node_kubectl, "mtlscertificate", "payments", "-n", NAMESPACE)["status"]
    assert "Rotated CA" in issuer["issuer"]

    wait_for(
        lambda: app.clients_see(new_server),
        timeout=PROPAGATION_SECONDS,
        interval=1,
        what="the new serial",
    )
    stats = app.stats()
    print(
        f"cluster CA rotated in {took:.0f} s; handshakes "
        f"{sum(s['handshakes'] for s in stats.values())}, failures {_failures(app)}"
    )
    assert set(_failures(app).values()) == {0}
    print(f"trust bundles sampled in a pod {trust.samples} times during the rotation")
    assert trust.samples >= 10
    assert not trust.failures, trust.failures
    assert "CN=Rotated CA" in trust.roots_seen, "the pod saw the new root arrive"


PARTNER_ID = "spiffe://partner.example/checkout"
PARTNER_POLICY: dict[str, Any] = {
    "apiVersion": "mtls.dev/v1alpha1",
    "kind": "MtlsPolicy",
    "metadata": {"name": "partner-checkout"},
    "spec": {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
        "allow": {"uris": [PARTNER_ID]},
    },
}


def test_a_withdrawn_identity_keeps_working_until_it_expires(
    app: App, node_kubectl: Kubectl
) -> None:
    """An MtlsPolicy grants checkout a partner's SPIFFE ID; withdrawn, the certificate that
    holds it is not renewed (PolicyDenied), and the pods go on with it until it expires."""
    node_kubectl("apply", "-f", "-", input=json.dumps(PARTNER_POLICY))
    spec = get_json(node_kubectl, "mtlscertificate", "checkout", "-n", NAMESPACE)["spec"]
    patch = {"spec": {"uris": [*spec["uris"], PARTNER_ID]}}
    node_kubectl(
        "patch",
        "mtlscertificate",
        "checkout",
        "-n",
        NAMESPACE,
        "--type=merge",
        f"--patch={json.dumps(patch)}",
    )
    granted = wait_for(
        lambda: _ready_with(app, PARTNER_ID), timeout=30, what="checkout issued the partner ID"
    )
    wait_for(
        lambda: app.server_saw(granted),
        timeout=PROPAGATION_SECONDS,
        interval=1,
        what="payments seeing checkout's partner certificate",
    )

    node_kubectl("delete", "mtlspolicy", PARTNER_POLICY["metadata"]["name"])
    denied = wait_for(
        lambda: _reason(node_kubectl) == "PolicyDenied" or None,
        timeout=30,
        what="checkout refused once its grant is gone",
    )
    assert denied
    secret_before = get_json(node_kubectl, "secret", "checkout-tls", "-n", NAMESPACE)
    refused = app.mtls("renew", "checkout", "-n", NAMESPACE)
    handshakes = {name: s["handshakes"] for name, s in app.stats().items()}
    # Long enough for a renewal the refusal would have let through to reach the pods.
    wait_for(
        lambda: all(s["handshakes"] >= handshakes[n] + 5 for n, s in app.stats().items()),
        timeout=60,
        interval=1,
        what="more calls with the withdrawn identity",
    )
    secret_after = get_json(node_kubectl, "secret", "checkout-tls", "-n", NAMESPACE)
    assert (
        secret_after["metadata"]["resourceVersion"] == secret_before["metadata"]["resourceVersion"]
    )
    assert app.serial("checkout") == granted
    assert _reason(node_kubectl) == "PolicyDenied"
    assert app.server_saw(granted)
    assert set(_failures(app).values()) == {0}, refused.stdout


def _ready_with(app: App, uri: str) -> int | None:
    body = get_json(app.kubectl, "mtlscertificate", "checkout", "-n", NAMESPACE)
    status = body.get("status", {})
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    issued = ready and ready[0]["status"] == "True" and uri in body["spec"].get("uris", [])
    current = ready and ready[0].get("observedGeneration") == body["metadata"]["generation"]
    return int(status["serialNumber"], 16) if issued and current else None


def _reason(kubectl: Kubectl) -> str | None:
    status = get_json(kubectl, "mtlscertificate", "checkout", "-n", NAMESPACE).get("status", {})
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    return str(ready[0]["reason"]) if ready else None
