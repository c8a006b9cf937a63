"""A way over from cert-manager, on a real API server: every example
manifest that converts applies strictly and is issued; manifests ported by
hand with cert-manager's spellings (usages, keystores.pkcs12.create) apply
strictly too; and a Secret cert-manager wrote is handed over to the
operator without a moment where it is missing or holds a key of another
certificate."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from mtls_operator.cli.convert import write_conversion
from mtls_operator.convert import convert_documents

from e2e.crd import server_apply
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.authorities import root_from_ca_init
from support.cluster import (
    GROUP,
    VERSION,
    condition,
    get_certificate,
    get_secret,
    secret_data,
    wait_ready,
    wait_reason,
)

EXAMPLES = Path(__file__).parents[1] / "data" / "cert-manager"
COMMAND = str(Path(sys.executable).parent / "mtls-operator")
MANAGED_BY = "app.kubernetes.io/managed-by=mtls-operator"
# The converted examples, each with the inputs it is converted from, and
# whether the session's test-name policy lets the cluster CA sign its names
# (*.example.com yes; example.com, pomerium's and cert-manager's test
# names no). A namespaced CA (caSecretName) is not judged by the policy.
CONVERTED: dict[str, tuple[tuple[str, ...], bool]] = {
    "example-com": (("08-ca-issuer.yaml", "02-full-example-legacy.yaml"), True),
    "www": (("10-tutorial-rotation-always-revision-limit.yaml",), True),
    "test-revision-override": (("11-rsa4096-pkcs8-rotation-never.yaml",), False),
    "test1": (("17-e2e-fixture-selfsigned-labels.yaml",), False),
    "test2": (("17-e2e-fixture-selfsigned-labels.yaml",), False),
    "pomerium-cert": (("18-pomerium-server-client-auth.yaml",), False),
    "pomerium-redis-cert": (("18-pomerium-server-client-auth.yaml",), False),
    "list-test-1": (("20-cmctl-convert-list.yaml",), False),
}
GRANT_LABEL = "e2e.mtls.dev/cert-manager-names"
# What a cluster administrator grants so that the names cert-manager issued
# keep being issued (the identity policy, docs/identity-policy.md).
GRANT_POLICY = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "MtlsPolicy",
    "metadata": {"name": "e2e-cert-manager-names"},
    "spec": {
        "namespaceSelector": {"matchLabels": {GRANT_LABEL: "true"}},
        "allow": {"dnsNames": ["example.com", "*.pomerium.svc.cluster.local", "*.cert-manager.1"]},
    },
}


def converted_yaml(*files: str) -> str:
    conversion = convert_documents(
        [d for f in files for d in yaml.safe_load_all((EXAMPLES / f).read_text())]
    )
    out = io.StringIO()
    write_conversion(conversion, out)
    return out.getvalue()


def into_namespace(text: str) -> str:
    """The converted documents without their own namespace, to apply with -n."""
    documents = [d for d in yaml.safe_load_all(text) if d]
    for document in documents:
        document["metadata"].pop("namespace", None)
    return yaml.safe_dump_all(documents)


def create_ca_secret(kubectl: Kubectl, namespace: str, name: str, directory: Path) -> None:
    directory.mkdir()
    root_from_ca_init(directory, f"{name} root")
    kubectl(
        "create",
        "secret",
        "tls",
        name,
        "-n",
        namespace,
        f"--cert={directory / 'ca-crt.pem'}",
        f"--key={directory / 'ca-key.pem'}",
    )


def test_converted_examples_are_issued(
    kubectl: Kubectl,
    namespace: str,
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    create_ca_secret(kubectl, namespace, "ca-key-pair", tmp_path / "ca")
    inputs = dict.fromkeys(files for files, _ in CONVERTED.values())
    manifests = [into_namespace(converted_yaml(*files)) for files in inputs]
    applied = [d["metadata"]["name"] for m in manifests for d in yaml.safe_load_all(m)]
    assert sorted(applied) == sorted(CONVERTED)

    for manifest in manifests:
        server_apply(kubectl, namespace, manifest)

    for name, (_, allowed) in CONVERTED.items():
        if allowed:
            wait_ready(kube_api, namespace, name)
        else:
            body = wait_reason(kube_api, namespace, name, "PolicyDenied")
            assert "spec.dnsNames" in (condition(body) or {}).get("message", ""), name
    leaf = x509.load_pem_x509_certificate(
        secret_data(kube_api, namespace, "example-com-tls")["tls.crt"]
    )
    assert leaf.issuer.rfc4514_string() == "CN=ca-key-pair root"

    # The administrator grants the names cert-manager used to issue.
    kubectl("apply", "-f", "-", input=json.dumps(GRANT_POLICY))
    kubectl("label", "namespace", namespace, f"{GRANT_LABEL}=true")
    for name in CONVERTED:
        wait_ready(kube_api, namespace, name)
    # cert-manager's default key (RSA, PKCS#1) is what the converted certificate gets.
    assert b"BEGIN RSA PRIVATE KEY" in secret_data(kube_api, namespace, "test1")["tls.key"]


PORTED_BY_HAND = """
apiVersion: mtls.dev/v1alpha1
kind: MtlsCertificate
metadata: {name: payments}
spec:
  secretName: payments-tls
  usages: [digital signature, key encipherment, server auth, client auth]
  dnsNames: [payments.example.com]
  keystores:
    pkcs12:
      create: true
      passwordSecretRef: {name: payments-p12, key: password}
---
apiVersion: mtls.dev/v1alpha1
kind: MtlsCertificate
metadata: {name: reports}
spec:
  secretName: reports-tls
  usages: [client auth]
  commonName: reports
  keystores:
    pkcs12: {create: false}
"""


def test_hand_ported_manifest_with_cert_manager_spellings_applies_strictly(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, kube_api: client.ApiClient
) -> None:
    kubectl(
        "create",
        "secret",
        "generic",
        "payments-p12",
        "-n",
        namespace,
        "--from-literal=password=changeit",
    )

    server_apply(kubectl, namespace, PORTED_BY_HAND)

    payments = wait_ready(kube_api, namespace, "payments")
    wait_ready(kube_api, namespace, "reports")
    assert payments["spec"]["usages"][-1] == "client auth"  # stored as written
    assert {"keystore.p12", "truststore.p12"} <= set(
        secret_data(kube_api, namespace, "payments-tls")
    )
    assert "keystore.p12" not in secret_data(kube_api, namespace, "reports-tls")
    leaf = x509.load_pem_x509_certificate(
        secret_data(kube_api, namespace, "payments-tls")["tls.crt"]
    )
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"usage": "server", "usages": ["server auth"]}, "set usage or usages, not both"),
        ({"usages": ["code signing"]}, 'Unsupported value: "code signing"'),
        ({"usages": ["digital signature"]}, "usages must include server auth, client auth or both"),
        ({}, "usage is required: set usage (server, client or both), or cert-manager's usages"),
        (
            {"usage": "server", "keystores": {"pkcs12": {"create": True}}},
            "passwordSecretRef is required unless create is false",
        ),
    ],
)
def test_cert_manager_spellings_are_checked_at_apply_time(
    kubectl: Kubectl, namespace: str, spec: dict[str, Any], message: str
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MtlsCertificate",
        "metadata": {"name": "bad"},
        "spec": {"secretName": "bad-tls", "dnsNames": ["bad.example.com"], **spec},
    }

    result = server_apply(kubectl, namespace, json.dumps(body), check=False)

    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr


def key_pair_matches(data: dict[str, bytes]) -> bool:
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    key = serialization.load_pem_private_key(data["tls.key"], None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    return leaf.public_key().public_bytes(encoding, public) == key.public_key().public_bytes(
        encoding, public
    )


def test_secret_written_by_cert_manager_is_handed_over_by_label(
    kubectl: Kubectl,
    namespace: str,
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    """The migration guide's hand-over: the Secret stays in place, valid at every read."""
    old_ca = tmp_path / "old-ca"
    old_ca.mkdir()
    root_from_ca_init(old_ca, "cert-manager CA")
    subprocess.run(
        [
            COMMAND,
            "issue",
            "server",
            "--ca-dir",
            str(old_ca),
            "--common-name",
            "web.example.com",
            "--dns",
            "web.example.com",
        ],
        check=True,
        capture_output=True,
    )
    kubectl(
        "create",
        "secret",
        "tls",
        "web-tls",
        "-n",
        namespace,
        f"--cert={old_ca / 'server-crt.pem'}",
        f"--key={old_ca / 'server-key.pem'}",
    )
    kubectl(
        "annotate", "secret", "web-tls", "-n", namespace, "cert-manager.io/certificate-name=web"
    )
    before = get_secret(kube_api, namespace, "web-tls")
    assert before is not None
    server_apply(
        kubectl,
        namespace,
        converted_yaml_for(
            {"secretName": "web-tls", "dnsNames": ["web.example.com"], "usages": ["server auth"]}
        ),
    )
    wait_reason(kube_api, namespace, "web", "SecretConflict")
    assert secret_data(kube_api, namespace, "web-tls") == decoded(before)

    kubectl("label", "secret", "web-tls", "-n", namespace, MANAGED_BY)
    deadline = time.monotonic() + 30
    while not is_ready(get_certificate(kube_api, namespace, "web")):
        assert time.monotonic() < deadline, "web did not become Ready"
        assert key_pair_matches(secret_data(kube_api, namespace, "web-tls"))

    after = get_secret(kube_api, namespace, "web-tls")
    assert after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # the same object, never deleted
    data = secret_data(kube_api, namespace, "web-tls")
    assert key_pair_matches(data)
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    assert leaf.issuer.rfc4514_string() != "CN=cert-manager CA"
    assert after["metadata"]["annotations"]["mtls.dev/certificate"] == "web"


def converted_yaml_for(spec: dict[str, Any]) -> str:
    document = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web"},
        "spec": {**spec, "issuerRef": {"name": "corp", "kind": "ClusterIssuer"}},
    }
    out = io.StringIO()
    write_conversion(convert_documents([document]), out)
    return out.getvalue()


def decoded(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def is_ready(body: dict[str, Any] | None) -> bool:
    found = condition(body)
    return bool(
        body
        and found
        and found["status"] == "True"
        and found.get("observedGeneration") == body["metadata"]["generation"]
    )
