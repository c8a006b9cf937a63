"""Keeping certificates valid: renewal before expiry, re-issuance on every
trigger with the reason in the event, drift repair without re-issuance, and
the day-2 commands (status, renew, inspect secret)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE

from localcluster import Kubectl
from operator_process import OperatorProcess
from recipe_checks import openssl_verify
from support.cluster import (
    certificate,
    create_certificate,
    events,
    get_certificate,
    get_secret,
    mount,
    patch_certificate,
    secret_data,
    wait_for,
    wait_ready,
)

COMMAND = str(Path(sys.executable).parent / "mtls-operator")


def serial_of(data: dict[str, bytes]) -> int:
    return x509.load_pem_x509_certificate(data["tls.crt"]).serial_number


def public_key_of(data: dict[str, bytes]) -> bytes:
    key = serialization.load_pem_private_key(data["tls.key"], None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def renewal_messages(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    return [
        e["message"] for e in events(api, namespace, name) if e["reason"] in ("Renewed", "Reissued")
    ]


def test_short_certificates_are_renewed_before_they_expire(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    for name, rotation in (("always", "Always"), ("never", "Never")):
        create_certificate(
            kube_api,
            namespace,
            certificate(
                name,
                "server",
                commonName=f"{name}.example",
                duration="30s",
                renewBefore="20s",
                privateKey={"rotationPolicy": rotation},
            ),
        )
    for name in ("always", "never"):
        wait_ready(kube_api, namespace, name)
    seen: dict[str, list[tuple[int, bytes, x509.Certificate]]] = {"always": [], "never": []}

    def observe() -> bool:
        for name, history in seen.items():
            data = secret_data(kube_api, namespace, f"{name}-tls")
            leaf = x509.load_pem_x509_certificate(data["tls.crt"])
            # Every certificate observed is still valid: renewal came before expiry.
            assert leaf.not_valid_after_utc.timestamp() > time.time(), (
                f"{name} expired before renewal"
            )
            if not history or history[-1][0] != leaf.serial_number:
                history.append((leaf.serial_number, public_key_of(data), leaf))
        return all(len(history) >= 3 for history in seen.values())

    wait_for(
        lambda: observe() or None,
        timeout=75,
        interval=0.5,
        what="three issuances of each certificate",
    )
    always, never = seen["always"], seen["never"]
    assert len({serial for serial, _, _ in always}) == len(always)
    assert len({key for _, key, _ in always}) == len(always), (
        "rotationPolicy Always: a new key every time"
    )
    assert len({key for _, key, _ in never}) == 1, "rotationPolicy Never: the key stays"
    for _, _, leaf in always + never:
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert abs(
            lifetime - (datetime.timedelta(seconds=30) + CLOCK_SKEW_BACKDATE)
        ) <= datetime.timedelta(seconds=1)
    assert any("trigger RenewalDue" in m for m in renewal_messages(kube_api, namespace, "always"))
    body = get_certificate(kube_api, namespace, "always")
    assert body is not None
    assert body["status"]["revision"] >= 3
    assert body["status"]["conditions"][0]["reason"] == "Renewed"


def test_each_trigger_leads_to_a_correct_secret(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    create_certificate(
        kube_api,
        namespace,
        certificate("svc", "server", commonName="svc.example", dnsNames=["svc.shop.example"]),
    )
    wait_ready(kube_api, namespace, "svc")
    core = client.CoreV1Api(kube_api)

    def reissued_after(serial: int, trigger: str) -> dict[str, bytes]:
        def changed() -> dict[str, bytes] | None:
            secret = get_secret(kube_api, namespace, "svc-tls")
            if secret is None:
                return None
            data = secret_data(kube_api, namespace, "svc-tls")
            return data if serial_of(data) != serial and data["tls.key"] else None

        data = wait_for(changed, timeout=15, what=f"re-issuance after {trigger}")
        files = mount(data, tmp_path / trigger)
        assert openssl_verify(files / "ca.crt", files / "tls.crt").returncode == 0
        assert public_key_of(data) == x509.load_pem_x509_certificate(
            data["tls.crt"]
        ).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        wait_for(
            lambda: (
                any(f"trigger {trigger}" in m for m in renewal_messages(kube_api, namespace, "svc"))
                or None
            ),
            timeout=10,
            what=f"an event naming {trigger}",
        )
        return data

    serial = serial_of(secret_data(kube_api, namespace, "svc-tls"))
    core.delete_namespaced_secret("svc-tls", namespace)
    data = reissued_after(serial, "SecretMissing")

    foreign_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    core.patch_namespaced_secret(
        "svc-tls", namespace, {"stringData": {"tls.key": foreign_key.decode()}}
    )
    data = reissued_after(serial_of(data), "KeyMismatch")

    patch_certificate(
        kube_api, namespace, "svc", {"spec": {"dnsNames": ["svc.shop.example", "api.shop.example"]}}
    )
    data = reissued_after(serial_of(data), "SpecChanged")
    names = (
        x509.load_pem_x509_certificate(data["tls.crt"])
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "api.shop.example" in names.get_values_for_type(x509.DNSName)
    ready = wait_ready(kube_api, namespace, "svc")
    assert ready["status"]["revision"] == 4
    assert ready["status"]["conditions"][0]["reason"] == "Reissued"


def test_no_op_updates_and_drift_repair_reissue_nothing(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    create_certificate(
        kube_api,
        namespace,
        certificate(
            "quiet",
            "client",
            commonName="quiet",
            secretTemplate={"labels": {"team": "shop", "tier": "gold"}},
        ),
    )
    ready = wait_ready(kube_api, namespace, "quiet")
    serial = ready["status"]["serialNumber"]
    before_events = {e["metadata"]["name"] for e in events(kube_api, namespace, "quiet")}

    # Metadata-only and identical updates: nothing to do.
    kubectl("label", "-n", namespace, "mtlscertificate", "quiet", "owner=alice")
    kubectl("annotate", "-n", namespace, "mtlscertificate", "quiet", "note=hello")
    patch_certificate(kube_api, namespace, "quiet", {"spec": {"commonName": "quiet"}})
    # Drift: a template label removed, our label changed, the owner reference dropped.
    client.CoreV1Api(kube_api).patch_namespaced_secret(
        "quiet-tls",
        namespace,
        {
            "metadata": {
                "labels": {"tier": None, "app.kubernetes.io/managed-by": "mtls-operator"},
                "ownerReferences": None,
            }
        },
    )

    def repaired() -> dict[str, object] | None:
        secret = get_secret(kube_api, namespace, "quiet-tls")
        if (
            secret
            and secret["metadata"].get("labels", {}).get("tier") == "gold"
            and secret["metadata"].get("ownerReferences")
        ):
            return secret
        return None

    wait_for(repaired, timeout=15, what="the Secret's metadata to be repaired")
    time.sleep(2)
    body = get_certificate(kube_api, namespace, "quiet")
    assert body is not None
    assert body["status"]["serialNumber"] == serial
    assert body["status"]["revision"] == 1
    reasons = [
        e["reason"]
        for e in events(kube_api, namespace, "quiet")
        if e["metadata"]["name"] not in before_events
    ]
    assert reasons == ["SecretUpdated"], reasons


def run_cli(
    kube_cluster_kubeconfig: Path, *args: str, kubectl_plugin: Kubectl | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kube_cluster_kubeconfig)}
    if kubectl_plugin is not None:
        # kubectl finds `kubectl-mtls` on PATH and runs it as `kubectl mtls`.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        argv = [str(kubectl_plugin.binary), "mtls", *args]
    else:
        argv = [COMMAND, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_renew_status_and_inspect_commands(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    create_certificate(
        kube_api, namespace, certificate("web", "server", commonName="web.shop.example")
    )
    create_certificate(
        kube_api, namespace, certificate("broken", "server", dnsNames=["bad_name.example"])
    )
    wait_ready(kube_api, namespace, "web")

    renewed = run_cli(operator.kubeconfig, "renew", "web", "-n", namespace)
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.strip() == f"renewal requested for {namespace}/web"
    wait_for(
        lambda: (
            (get_certificate(kube_api, namespace, "web") or {}).get("status", {}).get("revision")
            == 2
            or None
        ),
        timeout=15,
        what="revision 2",
    )
    time.sleep(3)
    body = get_certificate(kube_api, namespace, "web")
    assert body is not None
    assert body["status"]["revision"] == 2, "one request, exactly one re-issuance"
    assert any("trigger ManualRenewal" in m for m in renewal_messages(kube_api, namespace, "web"))

    table = run_cli(operator.kubeconfig, "status", "-n", namespace, kubectl_plugin=kubectl)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "READY",
        "REASON",
        "SECRET",
        "EXPIRES",
        "DAYS",
        "LEFT",
        "RENEWAL",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["web"][1:4] == ["True", "Renewed", "web-tls"]
    assert rows["broken"][1:3] == ["False", "InvalidSpec"]
    assert float(rows["web"][5]) > 89
    as_json = json.loads(run_cli(operator.kubeconfig, "status", "-n", namespace, "--json").stdout)
    assert {row["name"]: row["ready"] for row in as_json} == {"broken": "False", "web": "True"}

    inspected = run_cli(operator.kubeconfig, "inspect", "secret", "web-tls", "-n", namespace)
    assert inspected.returncode == 0, inspected.stderr
    assert "tls.key matches tls.crt" in inspected.stdout
    assert "Chain: OK (checked against the Secret's ca.crt)" in inspected.stdout
    assert body["status"]["serialNumber"] in inspected.stdout

    missing = run_cli(operator.kubeconfig, "renew", "nope", "-n", namespace)
    assert missing.returncode == 1
    assert missing.stderr == f"mtls-operator: error: MtlsCertificate {namespace}/nope not found\n"
    unreachable = subprocess.run(
        [COMMAND, "status"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": "/nonexistent"},
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(
        "mtls-operator: error: no in-cluster ServiceAccount and no usable kubeconfig: "
    )
    assert unreachable.stderr.count("\n") == 1
