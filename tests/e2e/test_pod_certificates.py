"""Pod certificates through Kubernetes' own API: the operator signs the
PodCertificateRequests a kubelet posts (played here through the API, as the
node's identity), and publishes its roots as ClusterTrustBundles and, where
asked, ConfigMaps."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from e2e.kubelet import KEY_TYPES, FakeKubelet, PodIdentity, condition_of, key_pem
from localcluster import Kubectl
from operator_process import OperatorProcess
from recipe_checks import openssl_verify, pkilint
from support.cluster import TRUST_BUNDLE_LABEL, wait_for

POD_BUNDLE = "mtls.dev:pod-identity:roots"
CLUSTER_BUNDLE = "mtls.dev:cluster-ca:roots"


@pytest.fixture
def kubelet(kubectl: Kubectl, namespace: str) -> FakeKubelet:
    return FakeKubelet(kubectl, f"node-{namespace[-6:]}")


def trust_bundle(kubectl: Kubectl, name: str) -> str:
    def published() -> str | None:
        found = kubectl("get", "clustertrustbundle", name, "-o", "json", check=False)
        return json.loads(found.stdout)["spec"]["trustBundle"] if found.returncode == 0 else None

    return wait_for(published, what=f"ClusterTrustBundle {name}")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("key_type", ["ECDSAP256", "ED25519", "RSA3072"])
def test_a_pod_gets_a_certificate_of_its_identity(
    kubectl: Kubectl,
    kubelet: FakeKubelet,
    namespace: str,
    key_type: str,
    tmp_path: Path,
) -> None:
    pod = kubelet.run_pod(namespace, "app", "payments")
    key = KEY_TYPES[key_type]()
    started = time.monotonic()
    name = kubelet.request(pod, key, max_expiration_seconds=7200)
    status = kubelet.wait_for_outcome(namespace, name)
    print(f"{key_type}: Issued {time.monotonic() - started:.2f}s after the request was posted")
    assert condition_of(status)[:2] == ("Issued", "Issued")
    chain = status["certificateChain"].encode()
    leaf = x509.load_pem_x509_certificates(chain)[0]
    assert leaf.public_key() == key.public_key()
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"spiffe://cluster.local/ns/{namespace}/sa/payments"
    ]
    not_before, not_after = parse_time(status["notBefore"]), parse_time(status["notAfter"])
    refresh = parse_time(status["beginRefreshAt"])
    assert (not_before, not_after) == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
    assert not_after - not_before == datetime.timedelta(seconds=7200), "maxExpirationSeconds"
    assert not_before < refresh < not_after
    # The chain verifies against the ClusterTrustBundle pods mount.
    (tmp_path / "leaf.pem").write_bytes(chain)
    (tmp_path / "bundle.pem").write_text(trust_bundle(kubectl, POD_BUNDLE))
    verified = openssl_verify(tmp_path / "bundle.pem", tmp_path / "leaf.pem")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # pkilint's only finding is its known limit with spiffe:// URIs.
    assert [f for f in pkilint(tmp_path / "leaf.pem") if "invalid_uri_syntax" not in f] == []


def test_two_pods_talk_mtls_with_their_pod_certificates_and_the_trust_bundle(
    operator: OperatorProcess,
    kubectl: Kubectl,
    kubelet: FakeKubelet,
    namespace: str,
    tmp_path: Path,
) -> None:
    server_name = f"server.{namespace}.svc"
    server_pod = kubelet.run_pod(
        namespace, "server", "server", user_annotations={"mtls.dev/dns-names": server_name}
    )
    client_pod = kubelet.run_pod(namespace, "client", "client")
    files = {}
    for pod, asked in (
        (server_pod, {"mtls.dev/dns-names": server_name}),
        (client_pod, None),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        name = kubelet.request(pod, key, user_annotations=asked)
        status = kubelet.wait_for_outcome(namespace, name)
        assert condition_of(status)[0] == "Issued", status
        # What the kubelet projects: the key, then the chain (credentialBundlePath).
        bundle = tmp_path / f"{pod.pod}.pem"
        bundle.write_bytes(key_pem(key) + status["certificateChain"].encode())
        files[pod.pod] = bundle
    trust = tmp_path / "trust.pem"
    trust.write_text(trust_bundle(kubectl, POD_BUNDLE))

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files["server"])
    server_context.load_verify_locations(trust)
    server_context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        raw, _ = listener.accept()
        with server_context.wrap_socket(raw, server_side=True) as tls:
            peer: dict[str, Any] = dict(tls.getpeercert() or {})
            seen.extend(v for k, v in peer.get("subjectAltName", ()) if k == "URI")
            tls.sendall(b"hello")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(trust))
    client_context.load_cert_chain(files["client"])
    with (
        socket.create_connection(("127.0.0.1", listener.getsockname()[1]), timeout=5) as raw,
        client_context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        assert tls.recv(5) == b"hello"
        server_peer: dict[str, Any] = dict(tls.getpeercert() or {})
    thread.join(timeout=5)
    listener.close()
    assert seen == [f"spiffe://cluster.local/ns/{namespace}/sa/client"]
    assert ("URI", f"spiffe://cluster.local/ns/{namespace}/sa/server") in server_peer[
        "subjectAltName"
    ]


def forged(kubelet: FakeKubelet, pod: PodIdentity, **overrides: Any) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return kubelet.request_body(pod, key, **overrides)


def test_requests_that_do_not_match_their_pod_are_denied(
    operator: OperatorProcess, kubectl: Kubectl, kubelet: FakeKubelet, namespace: str
) -> None:
    pod = kubelet.run_pod(namespace, "app", "payments")
    other = kubelet.run_pod(namespace, "other", "billing")
    kube_system_name = {"mtls.dev/dns-names": "api.kube-system.svc"}
    asking = kubelet.run_pod(namespace, "asking", "payments", user_annotations=kube_system_name)
    # NodeRestriction stops a node's forged request before the signer sees it...
    refused = kubelet.as_node(
        "create", "-f", "-", input=json.dumps(forged(kubelet, pod, podUID="0000")), check=False
    )
    assert refused.returncode != 0
    assert "differs from running pod" in refused.stderr
    # ...and the signer checks again whatever gets through (here, posted by an admin).
    cases = {
        "missing-pod": (forged(kubelet, pod, podName="gone"), "PodNotFound"),
        "pod-uid": (forged(kubelet, pod, podUID="0000"), "PodUIDMismatch"),
        "service-account": (
            forged(
                kubelet,
                pod,
                serviceAccountName="billing",
                serviceAccountUID=other.service_account_uid,
            ),
            "ServiceAccountMismatch",
        ),
        "another-namespace-name": (
            forged(kubelet, asking, user_annotations=kube_system_name),
            "PolicyDenied",
        ),
        "unknown-annotation": (
            forged(kubelet, pod, user_annotations={"example.com/role": "admin"}),
            "InvalidUnverifiedUserAnnotations",
        ),
    }
    names = {}
    for case, (body, _) in cases.items():
        created = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(body))
        names[case] = json.loads(created.stdout)["metadata"]["name"]
    for case, (_, reason) in cases.items():
        kind, found, message = condition_of(kubelet.wait_for_outcome(namespace, names[case]))
        assert (kind, found) == ("Denied", reason), (case, message)
        assert message, case
    # Another signer's request is left alone.
    elsewhere = kubectl(
        "create",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(forged(kubelet, pod, signer="example.com/other")),
    )
    name = json.loads(elsewhere.stdout)["metadata"]["name"]
    time.sleep(2)
    body = json.loads(
        kubectl("get", "podcertificaterequest", name, "-n", namespace, "-o", "json").stdout
    )
    assert not (body.get("status") or {}).get("conditions")


def test_a_node_gets_only_the_names_its_pod_asked_for(
    operator: OperatorProcess, kubectl: Kubectl, kubelet: FakeKubelet, namespace: str
) -> None:
    """A node (compromised, say) asks for its pods' certificates as the
    kubelet does; the names it may ask for are the ones each pod's own
    podCertificate volume declares, not any its namespace may hold."""
    declared = {"mtls.dev/dns-names": f"app.{namespace}.svc"}
    app = kubelet.run_pod(namespace, "app", "payments", user_annotations=declared)
    plain = kubelet.run_pod(namespace, "plain", "billing")
    elsewhere = kubelet.run_pod(namespace, "elsewhere", "other", signer="example.com/other")
    cases: dict[str, tuple[PodIdentity, dict[str, str] | None, tuple[str, str]]] = {
        "declared": (app, declared, ("Issued", "Issued")),
        "wider": (
            app,
            {"mtls.dev/dns-names": f"*.{namespace}.svc"},
            ("Denied", "InvalidUnverifiedUserAnnotations"),
        ),
        "more": (
            app,
            {"mtls.dev/dns-names": f"app.{namespace}.svc,admin.{namespace}.svc"},
            ("Denied", "InvalidUnverifiedUserAnnotations"),
        ),
        "undeclared": (
            plain,
            {"mtls.dev/dns-names": f"admin.{namespace}.svc"},
            ("Denied", "InvalidUnverifiedUserAnnotations"),
        ),
    }
    names = {
        case: kubelet.request(pod, ec.generate_private_key(ec.SECP256R1()), user_annotations=asked)
        for case, (pod, asked, _) in cases.items()
    }
    # A pod that mounts no volume of this signer: NodeRestriction refuses the
    # node, and the signer refuses whatever gets through (here, an admin's).
    stray = forged(kubelet, elsewhere)
    refused = kubelet.as_node("create", "-f", "-", input=json.dumps(stray), check=False)
    assert "does not mount a podCertificate projected volume" in refused.stderr, refused.stderr
    created = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(stray))
    names["no-volume-of-this-signer"] = json.loads(created.stdout)["metadata"]["name"]
    cases["no-volume-of-this-signer"] = (
        elsewhere,
        None,
        ("Denied", "PodCertificateVolumeNotFound"),
    )
    for case, (_, _, expected) in cases.items():
        status = kubelet.wait_for_outcome(namespace, names[case])
        kind, reason, message = condition_of(status)
        assert (kind, reason) == expected, (case, message)
        assert "\n" not in message, (case, message)
    status = kubelet.wait_for_outcome(namespace, names["declared"])
    leaf = x509.load_pem_x509_certificates(status["certificateChain"].encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"app.{namespace}.svc"]


def test_trust_bundle_configmaps_are_kept_and_others_left_alone(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    cluster_bundle = trust_bundle(kubectl, CLUSTER_BUNDLE)
    assert cluster_bundle == trust_bundle(kubectl, POD_BUNDLE)
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "mtls-ca-bundle",
            "namespace": namespace,
            "labels": {"owner": "someone"},
        },
        "data": {"ca.crt": "not ours"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(foreign))
    before = json.loads(
        kubectl("get", "configmap", "mtls-ca-bundle", "-n", namespace, "-o", "json").stdout
    )
    kubectl("label", "namespace", namespace, f"{TRUST_BUNDLE_LABEL}=true")
    selected = f"{namespace}-bundle"
    kubectl("create", "namespace", selected)
    try:
        kubectl("label", "namespace", selected, f"{TRUST_BUNDLE_LABEL}=true")

        def published() -> str | None:
            found = kubectl(
                "get", "configmap", "mtls-ca-bundle", "-n", selected, "-o", "json", check=False
            )
            return json.loads(found.stdout)["data"]["ca.crt"] if found.returncode == 0 else None

        assert wait_for(published, what="the ConfigMap in a selected namespace") == cluster_bundle
        time.sleep(1)
        after = json.loads(
            kubectl("get", "configmap", "mtls-ca-bundle", "-n", namespace, "-o", "json").stdout
        )
        assert after == before, "a ConfigMap the operator does not manage is never touched"
        # A namespace that is no longer selected loses its (now stale) bundle.
        kubectl("label", "namespace", selected, f"{TRUST_BUNDLE_LABEL}-")
        wait_for(lambda: published() is None, what="the ConfigMap removed")
        assert "could not publish" not in operator.log()
    finally:
        kubectl("delete", "namespace", selected, "--wait=false")


def test_the_pod_identity_example_is_valid_for_the_api_server(
    kubectl: Kubectl, namespace: str
) -> None:
    example = Path(__file__).parents[2] / "examples" / "pod-identity" / "deployment.yaml"
    text = example.read_text().replace("shop.svc", f"{namespace}.svc")
    applied = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=text)
    assert "deployment.apps/echo created (server dry run)" in applied.stdout
