"""Pod certificates through the real kubelet: examples/pod-identity on the node. The kubelet
makes each pod's key, posts the PodCertificateRequest, checks the operator's answer and
mounts it; the pods talk mTLS, each seeing the other's SPIFFE ID, with ECDSA, Ed25519 and
RSA keys."""

from __future__ import annotations

import copy
import datetime
import functools
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from localcluster import REPO_ROOT, Kubectl
from node.operator_pods import get_json
from support.cluster import wait_for

EXAMPLE = REPO_ROOT / "deploy" / "overlays" / "local" / "pod-identity"
NAMESPACE = "shop"
ECHO = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/echo"
CALLER = f"spiffe://cluster.local/ns/{NAMESPACE}/sa/caller"
# The caller Deployment's own key type, and two more callers made from its pod template.
KEY_TYPES = {"caller": "ECDSAP256", "caller-ed25519": "ED25519", "caller-rsa": "RSA3072"}
PUBLIC_KEYS: dict[str, type] = {
    "ECDSAP256": ec.EllipticCurvePublicKey,
    "ED25519": ed25519.Ed25519PublicKey,
    "RSA3072": rsa.RSAPublicKey,
}


def test_pods_talk_mtls_with_identities_the_kubelet_asked_for(
    node_kubectl: Kubectl, operator_installed: float
) -> None:
    node_kubectl("create", "namespace", NAMESPACE)
    node_kubectl("apply", "--server-side", "-k", str(EXAMPLE))
    node_kubectl("rollout", "status", "-n", NAMESPACE, "deployment/echo", "--timeout=120s")
    echo = get_json(node_kubectl, "pods", "-n", NAMESPACE, "-l", "app=echo")["items"][0]
    # No cluster DNS on this node: dial the echo pod, check echo.shop.svc in its certificate.
    address = f"ECHO_CONNECT_TO={echo['status']['podIP']}"
    node_kubectl("set", "env", "-n", NAMESPACE, "deployment/caller", address, "INTERVAL_SECONDS=2")
    template = get_json(node_kubectl, "deployment", "caller", "-n", NAMESPACE)["spec"]["template"]
    for name, key_type in KEY_TYPES.items():
        if name != "caller":
            node_kubectl(
                "apply", "-f", "-", input=json.dumps(_caller_pod(template, name, key_type))
            )

    for name in KEY_TYPES:
        call = wait_for(
            functools.partial(_first_call, node_kubectl, name),
            timeout=120,
            interval=2,
            what=f"a call from {name}",
        )
        assert call == {"ok": True, "echo": [ECHO], "me": [CALLER]}, call

    requests = get_json(node_kubectl, "podcertificaterequests", "-n", NAMESPACE)["items"]
    pods = {pod["metadata"]["uid"]: pod for pod in _pods(node_kubectl)}
    for request in requests:
        pod = pods.get(request["spec"]["podUID"])
        if pod is None:  # a pod the rollout replaced
            continue
        key_type = _volume_key_type(pod)
        public_key = _leaf(request).public_key()
        assert isinstance(public_key, PUBLIC_KEYS[key_type])
        if isinstance(public_key, rsa.RSAPublicKey):
            assert public_key.key_size == 3072
        posted, issued, running = _times(request, pod)
        print(
            f"{pod['metadata']['name']} ({key_type}): issued {issued - posted:.1f} s after the "
            f"kubelet posted the request, running {running - issued:.1f} s after that"
        )
        assert running - issued < 15, "the pod runs within seconds of the signer's answer"


def _caller_pod(template: dict[str, Any], name: str, key_type: str) -> dict[str, Any]:
    spec = copy.deepcopy(template["spec"])
    [identity] = [volume for volume in spec["volumes"] if volume["name"] == "identity"]
    identity["projected"]["sources"][0]["podCertificate"]["keyType"] = key_type
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "caller"}},
        "spec": spec,
    }


def _pods(kubectl: Kubectl) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get_json(kubectl, "pods", "-n", NAMESPACE)["items"]
    return [pod for pod in found if not pod["metadata"].get("deletionTimestamp")]


def _first_call(kubectl: Kubectl, name: str) -> dict[str, Any] | None:
    """The first call logged by the caller pod `name` (or, for "caller", the Deployment's
    current pod, which dials echo's address)."""
    if name == "caller":
        current = [
            pod
            for pod in _pods(kubectl)
            if pod["metadata"]["name"].startswith("caller-")
            and pod["metadata"]["name"] not in KEY_TYPES
            and "ECHO_CONNECT_TO" in json.dumps(pod["spec"]["containers"][0].get("env", []))
        ]
        if not current:
            return None
        name = current[0]["metadata"]["name"]
    log = kubectl("logs", "-n", NAMESPACE, name, check=False).stdout
    calls = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return calls[0] if calls else None


def _volume_key_type(pod: dict[str, Any]) -> str:
    [identity] = [volume for volume in pod["spec"]["volumes"] if volume["name"] == "identity"]
    key_type: str = identity["projected"]["sources"][0]["podCertificate"]["keyType"]
    return key_type


def _leaf(request: dict[str, Any]) -> x509.Certificate:
    chain = request["status"]["certificateChain"]
    return x509.load_pem_x509_certificates(chain.encode())[0]


def _times(request: dict[str, Any], pod: dict[str, Any]) -> tuple[float, float, float]:
    """When the kubelet posted the request, when it was issued, when the container started."""
    [issued] = [c for c in request["status"]["conditions"] if c["type"] == "Issued"]
    [status] = pod["status"]["containerStatuses"]
    return (
        _seconds(request["metadata"]["creationTimestamp"]),
        _seconds(issued["lastTransitionTime"]),
        _seconds(status["state"]["running"]["startedAt"]),
    )


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
