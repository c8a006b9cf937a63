"""Failures that must be clear and contained, CAs per namespace, Secrets we
do not own, and deletion."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from localcluster import Kubectl
from operator_process import OperatorProcess
from recipe_checks import openssl, openssl_verify
from support.cluster import (
    certificate,
    condition,
    create_certificate,
    event_reasons,
    events,
    get_certificate,
    get_secret,
    mount,
    plain,
    secret_data,
    wait_for,
    wait_ready,
    wait_reason,
)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"dnsNames": ["good.example", "bad_name.example"]},
            "spec.dnsNames[1] \"bad_name.example\": label 'bad_name' must consist of",
        ),
        (
            {"ipAddresses": ["10.0.0.300"]},
            'spec.ipAddresses[0] "10.0.0.300": not an IPv4 or IPv6 address',
        ),
        (
            {"commonName": "x", "uris": ["spiffe://"]},
            'spec.uris[0] "spiffe://": the URI has an empty authority',
        ),
        (
            {"commonName": "x", "emailAddresses": ["ops@exa_mple.com"]},
            "spec.emailAddresses[0] \"ops@exa_mple.com\": the domain after '@' is invalid",
        ),
        (
            {"commonName": "x", "duration": "5s"},
            'spec.duration "5s": is shorter than the minimum 10s',
        ),
        (
            {"dnsNames": ["*.com"]},
            'spec.dnsNames[0] "*.com": a wildcard must be followed by at least two labels',
        ),
    ],
    ids=["dns", "ip", "uri", "email", "min-duration", "wildcard"],
)
def test_operator_rejects_what_the_schema_cannot(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    namespace: str,
    spec: dict[str, object],
    message: str,
) -> None:
    body = certificate("bad", "server")
    body["spec"].update(spec)
    create_certificate(kube_api, namespace, body)
    create_certificate(kube_api, namespace, certificate("good", "client", commonName="good"))
    failed = wait_reason(kube_api, namespace, "bad", "InvalidSpec")
    ready = condition(failed)
    assert ready is not None
    assert ready["status"] == "False"
    assert message in str(ready["message"]), ready["message"]
    assert "\n" not in ready["message"]
    stalled = condition(failed, "Stalled")
    assert stalled is not None
    assert stalled["status"] == "True"
    wait_ready(kube_api, namespace, "good")
    assert get_secret(kube_api, namespace, "bad-tls") is None
    warnings = [e for e in events(kube_api, namespace, "bad") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["InvalidSpec"]
    assert message in warnings[0]["message"]

    # Fixing the spec is all it takes.
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
        "mtls.dev",
        "v1alpha1",
        namespace,
        "mtlscertificates",
        "bad",
        {
            "spec": {
                "dnsNames": ["fixed.example"],
                "ipAddresses": None,
                "uris": None,
                "emailAddresses": None,
                "duration": None,
                "commonName": None,
            }
        },
    )
    fixed = wait_ready(kube_api, namespace, "bad")
    assert condition(fixed, "Stalled") is None


def _recipe_ca(directory: Path, passphrase: str) -> tuple[bytes, bytes]:
    """The recipe's CA: `openssl genrsa -aes256` and `openssl req -x509`."""
    key, cert = directory / "ca-key.pem", directory / "ca-crt.pem"
    openssl("genrsa", "-aes256", "-passout", f"pass:{passphrase}", "-out", str(key), "2048")
    openssl(
        "req",
        "-new",
        "-x509",
        "-days",
        "3650",
        "-key",
        str(key),
        "-passin",
        f"pass:{passphrase}",
        "-out",
        str(cert),
        "-sha256",
        "-subj",
        "/O=Shop/CN=Shop Team CA",
    )
    return cert.read_bytes(), key.read_bytes()


def test_namespaced_ca_from_the_openssl_recipe(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    cert_pem, key_pem = _recipe_ca(tmp_path, "team-secret")
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="team-ca", annotations={"mtls.dev/passphrase-secret": "team-ca-passphrase"}
            ),
            data={
                "ca-crt.pem": base64.b64encode(cert_pem).decode(),
                "ca-key.pem": base64.b64encode(key_pem).decode(),
            },
        ),
    )
    # Created after the CA: issuance waits for the passphrase, then goes on by itself.
    create_certificate(
        kube_api,
        namespace,
        certificate("api", "server", commonName="api.shop.example", caSecretName="team-ca"),
    )
    wait_reason(kube_api, namespace, "api", "CAInvalid")
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="team-ca-passphrase"),
            string_data={"passphrase": "team-secret\n"},
        ),
    )
    ready = wait_ready(kube_api, namespace, "api")
    assert ready["status"]["issuer"] == "CN=Shop Team CA,O=Shop"
    files = mount(secret_data(kube_api, namespace, "api-tls"), tmp_path / "api")
    (tmp_path / "team-ca.pem").write_bytes(cert_pem)
    assert openssl_verify(tmp_path / "team-ca.pem", files / "tls.crt").returncode == 0
    assert (files / "ca.crt").read_bytes() == cert_pem

    # The same CA name from another namespace is not reachable.
    kubectl("create", "namespace", f"{namespace}-other")
    try:
        create_certificate(
            kube_api,
            f"{namespace}-other",
            certificate("api", "server", commonName="api.other.example", caSecretName="team-ca"),
        )
        failed = wait_reason(kube_api, f"{namespace}-other", "api", "CANotFound")
        ready_condition = condition(failed)
        assert ready_condition is not None
        assert f"{namespace}-other/team-ca does not exist" in ready_condition["message"]
        assert get_secret(kube_api, f"{namespace}-other", "api-tls") is None
    finally:
        kubectl("delete", "namespace", f"{namespace}-other", "--wait=false")


def test_wrong_passphrase_is_ca_invalid_and_names_the_problem(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    cert_pem, key_pem = _recipe_ca(tmp_path, "right")
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="ca", annotations={"mtls.dev/passphrase-secret": "ca-pass"}
            ),
            data={
                "tls.crt": base64.b64encode(cert_pem).decode(),
                "tls.key": base64.b64encode(key_pem).decode(),
            },
        ),
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="ca-pass"), string_data={"passphrase": "wrong"}
        ),
    )
    create_certificate(
        kube_api, namespace, certificate("svc", "client", commonName="svc", caSecretName="ca")
    )
    failed = wait_reason(kube_api, namespace, "svc", "CAInvalid")
    ready_condition = condition(failed)
    assert ready_condition is not None
    assert "wrong passphrase" in ready_condition["message"]
    assert "PRIVATE KEY" not in ready_condition["message"]
    core.patch_namespaced_secret("ca-pass", namespace, {"stringData": {"passphrase": "right"}})
    wait_ready(kube_api, namespace, "svc")


def test_unmanaged_secret_is_left_untouched(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    mine = core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="taken", labels={"team": "payments"}),
            string_data={"tls.crt": "not ours", "password": "hunter2"},
        ),
    )
    create_certificate(
        kube_api,
        namespace,
        certificate("claimant", "server", secret_name="taken", commonName="claimant.example"),
    )
    failed = wait_reason(kube_api, namespace, "claimant", "SecretConflict")
    ready_condition = condition(failed)
    assert ready_condition is not None
    assert "is not managed by mtls-operator" in ready_condition["message"]
    time.sleep(2)
    before, after = plain(kube_api, mine), get_secret(kube_api, namespace, "taken")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == before["data"]
    assert after["metadata"]["labels"] == {"team": "payments"}
    assert "ownerReferences" not in after["metadata"]

    # Once the user removes their Secret, the certificate is issued.
    core.delete_namespaced_secret("taken", namespace)
    wait_ready(kube_api, namespace, "claimant", timeout=60)


def test_older_certificate_owns_a_shared_secret_name(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    create_certificate(
        kube_api,
        namespace,
        certificate("first", "server", secret_name="shared", commonName="first.example"),
    )
    wait_ready(kube_api, namespace, "first")
    create_certificate(
        kube_api,
        namespace,
        certificate("second", "server", secret_name="shared", commonName="second.example"),
    )
    failed = wait_reason(kube_api, namespace, "second", "SecretConflict")
    ready_condition = condition(failed)
    assert ready_condition is not None
    assert "also named by an older certificate" in ready_condition["message"]
    shared = get_secret(kube_api, namespace, "shared")
    assert shared is not None
    assert shared["metadata"]["annotations"]["mtls.dev/certificate"] == "first"


def test_kubectl_wait_and_deletion(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    create_certificate(
        kube_api, namespace, certificate("deleted", "server", commonName="deleted.example")
    )
    create_certificate(
        kube_api,
        namespace,
        certificate(
            "retained", "server", commonName="retained.example", secretDeletionPolicy="Retain"
        ),
    )
    waited = kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "mtlscertificate/deleted",
        "mtlscertificate/retained",
        "--timeout=60s",
    )
    assert "condition met" in waited.stdout
    deleted_secret = get_secret(kube_api, namespace, "deleted-tls")
    retained_secret = get_secret(kube_api, namespace, "retained-tls")
    assert deleted_secret is not None
    assert retained_secret is not None
    assert [ref["name"] for ref in deleted_secret["metadata"]["ownerReferences"]] == ["deleted"]
    assert "ownerReferences" not in retained_secret["metadata"]
    body = get_certificate(kube_api, namespace, "deleted")
    assert body is not None
    assert not body["metadata"].get("finalizers")

    # No finalizer: the deletion completes without the operator's help.
    kubectl("delete", "-n", namespace, "mtlscertificate", "deleted", "retained", "--timeout=20s")
    wait_for(
        lambda: get_secret(kube_api, namespace, "deleted-tls") is None,
        timeout=60,
        what="garbage collection of deleted-tls",
    )
    assert get_secret(kube_api, namespace, "retained-tls") is not None


def test_deletion_does_not_wait_for_the_operator(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    create_certificate(kube_api, namespace, certificate("orphan", "client", commonName="orphan"))
    wait_ready(kube_api, namespace, "orphan")
    operator.stop()
    try:
        kubectl("delete", "-n", namespace, "mtlscertificate", "orphan", "--timeout=10s")
        wait_for(
            lambda: get_secret(kube_api, namespace, "orphan-tls") is None,
            timeout=60,
            what="garbage collection",
        )
    finally:
        operator.start()


def test_missing_ca_recovers_when_it_appears(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_certificate(
        kube_api,
        namespace,
        certificate("waits", "server", commonName="waits.example", caSecretName="late-ca"),
    )
    wait_reason(kube_api, namespace, "waits", "CANotFound")
    assert "CANotFound" in event_reasons(kube_api, namespace, "waits")
    subprocess.run(
        [str(Path(sys.executable).parent / "mtls-operator"), "ca", "init", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="late-ca"),
            data={
                name: base64.b64encode((tmp_path / name).read_bytes()).decode()
                for name in ("ca-crt.pem", "ca-key.pem")
            },
        ),
    )
    # Nothing else is done: the operator notices the CA by itself.
    wait_ready(kube_api, namespace, "waits")
