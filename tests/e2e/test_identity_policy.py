"""The identity policy on the real API server, with real RBAC: a user who is
admin of one namespace only (bound to Kubernetes' `admin` role, which the
shipped roles extend) tries to obtain another namespace's identities through
every field, gets only PolicyDenied and no Secret, and gets every identity of
its own namespace; only a cluster administrator's MtlsPolicy grants more.
A real mTLS server of the other namespace, authorising by SPIFFE ID, refuses
every client certificate the first namespace can obtain."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e.tenants import wait_until_admin
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.cluster import (
    certificate,
    condition,
    events,
    get_certificate,
    get_secret,
    mount,
    secret_data,
    wait_for,
    wait_ready,
    wait_reason,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_ROLES = REPO_ROOT / "deploy" / "base" / "user-roles.yaml"
USER = "alice"
GROUP = "team-a-admins"


@dataclass(frozen=True)
class Tenants:
    a: str
    b: str
    as_alice: Kubectl


def as_user(kubectl: Kubectl) -> Kubectl:
    """kubectl with --as/--as-group: every request is authorised as alice."""

    def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return kubectl(f"--as={USER}", f"--as-group={GROUP}", *args, **kwargs)

    return run  # type: ignore[return-value]


@pytest.fixture(scope="module")
def tenants(kubectl: Kubectl, mtls_crd: None) -> Iterator[Tenants]:
    suffix = secrets.token_hex(2)
    a, b = f"team-a-{suffix}", f"team-b-{suffix}"
    kubectl("apply", "-f", str(USER_ROLES))
    for name in (a, b):
        kubectl("create", "namespace", name)
    kubectl(
        "create", "rolebinding", "team-a-admins", "-n", a, "--clusterrole=admin", f"--group={GROUP}"
    )
    alice = as_user(kubectl)
    wait_until_admin(alice, a)
    try:
        yield Tenants(a, b, alice)
    finally:
        for name in (a, b):
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def apply_as_alice(tenants: Tenants, body: dict[str, Any]) -> None:
    tenants.as_alice("apply", "-n", tenants.a, "-f", "-", input=json.dumps(body))


def refused_cases(a: str, b: str) -> list[tuple[str, dict[str, Any], str]]:
    """(name, spec fields, the start of the refusal) for identities of b."""
    return [
        (
            "dns-svc",
            {"usage": "server", "dnsNames": [f"api.{b}.svc"]},
            f'spec.dnsNames "api.{b}.svc"',
        ),
        (
            "dns-cluster-domain",
            {"usage": "server", "dnsNames": [f"api.{b}.svc.cluster.local"]},
            f'spec.dnsNames "api.{b}.svc.cluster.local"',
        ),
        (
            "dns-wildcard",
            {"usage": "server", "dnsNames": [f"*.{b}.svc"]},
            f'spec.dnsNames "*.{b}.svc"',
        ),
        (
            "dns-wildcard-all",
            {"usage": "server", "dnsNames": ["*.svc.cluster.local"]},
            'spec.dnsNames "*.svc.cluster.local"',
        ),
        ("dns-bare", {"usage": "server", "dnsNames": [f"api.{b}"]}, f'spec.dnsNames "api.{b}"'),
        (
            "cn-server",
            {"usage": "server", "commonName": f"api.{b}.svc"},
            f'spec.commonName "api.{b}.svc"',
        ),
        (
            "cn-both",
            {"usage": "both", "commonName": f"api.{b}.svc"},
            f'spec.commonName "api.{b}.svc"',
        ),
        (
            "spiffe",
            {"usage": "client", "uris": [f"spiffe://cluster.local/ns/{b}/sa/client"]},
            f'spec.uris "spiffe://cluster.local/ns/{b}/sa/client"',
        ),
        ("ip", {"usage": "server", "ipAddresses": ["10.96.0.10"]}, 'spec.ipAddresses "10.96.0.10"'),
        (
            "email",
            {"usage": "client", "emailAddresses": [f"admin@{b}.example.com"]},
            f'spec.emailAddresses "admin@{b}.example.com"',
        ),
        (
            "organization",
            {"usage": "client", "commonName": "client", "subject": {"organizations": [b]}},
            f'spec.subject.organizations "{b}"',
        ),
        (
            "unit",
            {"usage": "client", "commonName": "client", "subject": {"organizationalUnits": [b]}},
            f'spec.subject.organizationalUnits "{b}"',
        ),
    ]


def test_a_namespace_admin_cannot_obtain_another_namespaces_identities(
    operator: OperatorProcess, kube_api: client.ApiClient, tenants: Tenants
) -> None:
    cases = refused_cases(tenants.a, tenants.b)
    for name, fields, _ in cases:
        apply_as_alice(tenants, certificate(name, **fields))
    for name, _, expected in cases:
        body = wait_reason(kube_api, tenants.a, name, "PolicyDenied")
        ready = condition(body)
        assert ready is not None
        assert ready["status"] == "False"
        assert ready["message"].startswith(expected + ": "), (name, ready["message"])
        stalled = condition(body, "Stalled")
        assert stalled is not None
        assert stalled["status"] == "True"
        assert get_secret(kube_api, tenants.a, f"{name}-tls") is None, name
        warnings = [e for e in events(kube_api, tenants.a, name) if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["PolicyDenied"], name


def test_a_namespace_admin_gets_every_identity_of_its_own_namespace(
    operator: OperatorProcess, kube_api: client.ApiClient, tenants: Tenants, tmp_path: Path
) -> None:
    a = tenants.a
    apply_as_alice(
        tenants,
        certificate(
            "own",
            "both",
            commonName=f"api.{a}.svc",
            dnsNames=[f"api.{a}.svc", f"api.{a}.svc.cluster.local", f"*.api.{a}.svc"],
            uris=[f"spiffe://cluster.local/ns/{a}/sa/api"],
            subject={"countries": ["DE"], "localities": ["Berlin"]},
        ),
    )
    apply_as_alice(tenants, certificate("any-client", "client", commonName="reporting"))
    for name in ("own", "any-client"):
        wait_ready(kube_api, tenants.a, name)
    own = mount(secret_data(kube_api, a, "own-tls"), tmp_path / "own")
    text = openssl_text(own / "tls.crt")
    assert f"Subject: C = DE, L = Berlin, O = {a}, CN = api.{a}.svc" in text
    assert f"URI:spiffe://cluster.local/ns/{a}/sa/api" in text
    client_cert = mount(secret_data(kube_api, a, "any-client-tls"), tmp_path / "client")
    # The Organization is the namespace, set by the operator, not the tenant.
    assert f"Subject: O = {a}, CN = reporting" in openssl_text(client_cert / "tls.crt")


def test_only_cluster_admins_write_policies(tenants: Tenants) -> None:
    for verb in ("create", "patch", "delete"):
        answer = tenants.as_alice("auth", "can-i", verb, "mtlspolicies.mtls.dev", check=False)
        assert answer.stdout.strip() == "no", verb
    assert (
        tenants.as_alice("auth", "can-i", "list", "mtlspolicies.mtls.dev").stdout.strip() == "yes"
    )
    attempt = tenants.as_alice("apply", "-f", "-", input=json.dumps(grant(tenants.a)), check=False)
    assert attempt.returncode != 0
    assert "forbidden" in attempt.stderr.lower(), attempt.stderr


def grant(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsPolicy",
        "metadata": {"name": f"{namespace}-public"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "allow": {"dnsNames": ["api.example.com"]},
        },
    }


def test_a_policy_grants_and_its_deletion_takes_back_without_touching_the_secret(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, tenants: Tenants
) -> None:
    apply_as_alice(tenants, certificate("public", "server", dnsNames=["api.example.com"]))
    wait_reason(kube_api, tenants.a, "public", "PolicyDenied")
    policy = grant(tenants.a)
    started = time.monotonic()
    kubectl("apply", "-f", "-", input=json.dumps(policy))
    try:
        wait_ready(kube_api, tenants.a, "public", timeout=10)
        granted_after = time.monotonic() - started
        issued = get_secret(kube_api, tenants.a, "public-tls")
        assert issued is not None
        status = wait_for(
            lambda: (get_policy(kube_api, policy["metadata"]["name"]) or {}).get("status"),
            what="the policy's status",
        )
        assert status["selectedNamespaces"] == [tenants.a]
        assert condition({"status": status})["status"] == "True"  # type: ignore[index]
    finally:
        kubectl("delete", "mtlspolicy", policy["metadata"]["name"])
    body = wait_reason(kube_api, tenants.a, "public", "PolicyDenied", timeout=10)
    ready = condition(body)
    assert ready is not None
    assert (
        "Secret public-tls is kept, and not renewed, until its certificate expires"
        in ready["message"]
    )
    kept = get_secret(kube_api, tenants.a, "public-tls")
    assert kept is not None
    assert kept["metadata"]["resourceVersion"] == issued["metadata"]["resourceVersion"]
    assert kept["data"] == issued["data"]
    print(f"granted: Ready {granted_after:.1f}s after the policy was applied")


# --- Names written to slip past the checks. ---


def smuggled_cases(a: str, b: str) -> list[tuple[str, dict[str, Any], str, str]]:
    """(name, spec fields, field, value): names of b, or names no relying
    party reads as written, dressed up as a's under `partner_grants(a, b)`."""
    uri_of_b = f"spiffe://partner.example/ns/{a}/../{b}/sa/web"
    return [
        (
            "dns-newline",
            {"usage": "server", "dnsNames": [f"api.{b}.svc\n.{a}.svc"]},
            "dnsNames[0]",
            f"api.{b}.svc\n.{a}.svc",
        ),
        (
            "spiffe-newline",
            {"usage": "client", "uris": [f"spiffe://cluster.local/ns/{a}/sa/web\n"]},
            "uris[0]",
            f"spiffe://cluster.local/ns/{a}/sa/web\n",
        ),
        (
            "spiffe-escape",
            {
                "usage": "client",
                "uris": [f"spiffe://cluster.local/ns/{a}/sa/x/../../../ns/{b}/sa/client"],
            },
            "uris[0]",
            f"spiffe://cluster.local/ns/{a}/sa/x/../../../ns/{b}/sa/client",
        ),
        ("uri-dot-segments", {"usage": "client", "uris": [uri_of_b]}, "uris[0]", uri_of_b),
        (
            "uri-encoded-dots",
            {"usage": "client", "uris": [uri_of_b.replace("..", "%2e%2e")]},
            "uris[0]",
            uri_of_b.replace("..", "%2e%2e"),
        ),
        (
            "ip-mapped",
            {"usage": "server", "ipAddresses": ["::ffff:8.8.8.8"]},
            "ipAddresses[0]",
            "::ffff:8.8.8.8",
        ),
        (
            "cn-into-san",
            {"usage": "server", "commonName": f"api.{b}.svc"},
            "commonName",
            f"api.{b}.svc",
        ),
        (
            "cn-dn-slash",
            {"usage": "client", "commonName": f"checkout/O={b}"},
            "commonName",
            f"checkout/O={b}",
        ),
        (
            "cn-dn-comma",
            {"usage": "client", "commonName": f"checkout,O={b}"},
            "commonName",
            f"checkout,O={b}",
        ),
    ]


def partner_grants(a: str, b: str) -> dict[str, Any]:
    """What a cluster administrator grants a: a URI prefix of its own, an
    IPv6 range, and a legacy Common Name (which is b's service name)."""
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsPolicy",
        "metadata": {"name": f"{a}-partner"},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": a}},
            "allow": {
                "uris": [f"spiffe://partner.example/ns/{a}/*"],
                "ipAddresses": ["::/64"],
                "commonNames": [f"api.{b}.svc"],
            },
        },
    }


def test_a_namespace_admin_cannot_smuggle_names_past_the_checks(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, tenants: Tenants
) -> None:
    a, b = tenants.a, tenants.b
    policy = partner_grants(a, b)
    kubectl("apply", "-f", "-", input=json.dumps(policy))
    try:
        wait_for(
            lambda: _selected(kube_api, policy["metadata"]["name"]) == [a],
            what="the partner policy to select namespace a",
        )
        # What the grants are for is still signed.
        apply_as_alice(
            tenants,
            certificate("partner", "client", uris=[f"spiffe://partner.example/ns/{a}/sa/web"]),
        )
        wait_ready(kube_api, a, "partner")
        refused_by_api_server, applied = [], []
        for name, fields, field, value in smuggled_cases(a, b):
            attempt = tenants.as_alice(
                "apply",
                "-n",
                a,
                "-f",
                "-",
                input=json.dumps(certificate(name, **fields)),
                check=False,
            )
            if attempt.returncode == 0:
                applied.append((name, field, value))
            else:
                # The schema's patterns: the field named, the value escaped.
                assert f"spec.{field}: Invalid value: {json.dumps(value)}" in attempt.stderr, (
                    name,
                    attempt.stderr,
                )
                refused_by_api_server.append(name)
        for name, field, value in applied:
            body = wait_for(partial(_judged, kube_api, a, name), what=f"{a}/{name} judged")
            ready = condition(body)
            assert ready is not None
            assert (ready["status"], ready["reason"]) in (
                ("False", "InvalidSpec"),
                ("False", "PolicyDenied"),
            ), (name, ready)
            message = ready["message"]
            assert "\n" not in message, (name, message)
            shown = field if ready["reason"] == "InvalidSpec" else field.split("[", 1)[0]
            assert message.startswith(f"spec.{shown} {json.dumps(value)}: "), (name, message)
            assert get_secret(kube_api, a, f"{name}-tls") is None, name
        # What a schema can say (control and separator characters) it says at apply time.
        assert sorted(refused_by_api_server) == [
            "cn-dn-comma",
            "cn-dn-slash",
            "dns-newline",
            "spiffe-newline",
        ]
    finally:
        kubectl("delete", "mtlspolicy", policy["metadata"]["name"], "--ignore-not-found")


def _selected(api: client.ApiClient, name: str) -> list[str] | None:
    status = (get_policy(api, name) or {}).get("status") or {}
    selected: list[str] | None = status.get("selectedNamespaces")
    return selected


def _judged(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """The certificate once the operator has judged its current generation."""
    body = get_certificate(api, namespace, name)
    ready = condition(body)
    if body is None or ready is None:
        return None
    return body if ready.get("observedGeneration") == body["metadata"]["generation"] else None


def get_policy(api: client.ApiClient, name: str) -> dict[str, Any] | None:
    custom: Any = client.CustomObjectsApi(api)
    try:
        result: dict[str, Any] = custom.get_cluster_custom_object(
            "mtls.dev", "v1alpha1", "mtlspolicies", name
        )
    except client.exceptions.ApiException as err:
        if err.status == 404:
            return None
        raise
    return result


def openssl_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


# --- A server of team-b that authorises clients by SPIFFE ID. ---


class SpiffeServer:
    """TLS 1.3 with a required client certificate signed by the cluster CA;
    answers "ok" to the one SPIFFE ID it allows and "forbidden" to any other."""

    def __init__(self, directory: Path, allowed: str) -> None:
        self.allowed = allowed
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        self.context.load_verify_locations(directory / "ca.crt")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as connection:
                    peer: dict[str, Any] = dict(connection.getpeercert() or {})
                    names: tuple[tuple[str, str], ...] = peer.get("subjectAltName", ())
                    uris = [value for kind, value in names if kind == "URI"]
                    connection.sendall(b"ok" if uris == [self.allowed] else b"forbidden")
            except (ssl.SSLError, OSError):
                raw.close()

    def close(self) -> None:
        self.listener.close()


def ask(server: SpiffeServer, client_dir: Path, hostname: str) -> str:
    context = ssl.create_default_context(cafile=str(client_dir / "ca.crt"))
    context.load_cert_chain(client_dir / "tls.crt", client_dir / "tls.key")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as connection,
    ):
        return connection.recv(64).decode()


def test_a_spiffe_authorising_server_refuses_every_client_another_namespace_can_get(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    tenants: Tenants,
    tmp_path: Path,
) -> None:
    a, b = tenants.a, tenants.b
    allowed = f"spiffe://cluster.local/ns/{b}/sa/client"
    hostname = f"server.{b}.svc"
    for body in (
        certificate("server", "server", dnsNames=[hostname]),
        certificate("client", "client", commonName="client", uris=[allowed]),
    ):
        kubectl("apply", "-n", b, "-f", "-", input=json.dumps(body))
    # What namespace a can obtain: its own SPIFFE ID, and (CN, O=a) with the same CN.
    for body in (
        certificate(
            "mimic",
            "client",
            commonName="client",
            uris=[f"spiffe://cluster.local/ns/{a}/sa/client"],
        ),
        certificate("plain", "client", commonName="client"),
        certificate("impostor", "client", commonName="client", uris=[allowed]),
    ):
        apply_as_alice(tenants, body)
    for namespace, name in ((b, "server"), (b, "client"), (a, "mimic"), (a, "plain")):
        wait_ready(kube_api, namespace, name)
    wait_reason(kube_api, a, "impostor", "PolicyDenied")
    assert get_certificate(kube_api, a, "impostor") is not None
    assert get_secret(kube_api, a, "impostor-tls") is None
    directories = {
        (namespace, name): mount(
            secret_data(kube_api, namespace, f"{name}-tls"), tmp_path / f"{namespace}-{name}"
        )
        for namespace, name in ((b, "server"), (b, "client"), (a, "mimic"), (a, "plain"))
    }
    server = SpiffeServer(directories[(b, "server")], allowed)
    try:
        assert ask(server, directories[(b, "client")], hostname) == "ok"
        for name in ("mimic", "plain"):
            assert ask(server, directories[(a, name)], hostname) == "forbidden", name
    finally:
        server.close()
