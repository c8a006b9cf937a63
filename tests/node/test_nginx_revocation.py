"""A stolen client key refused by nginx within minutes, on a real node.

nginx (two pods, `ssl_verify_client on`) checks client certificates against the cluster
CA's CRL, `ssl_crl` from the ConfigMap `mtls-ca-bundle` it mounts; its Deployment follows
reloads, since nginx reads the CRL only at start-up. A laptop's client certificate is
accepted; `kubectl mtls revoke` revokes it: the operator records the serial, re-issues the
laptop's certificate with a new key, signs a CRL listing it, writes it into the bundle and
rolls nginx, whose new pods refuse the stolen certificate and accept the re-issued one. The
caller pod, whose certificate is not revoked, calls nginx throughout and no request of it
fails. The time from `revoke` to the last nginx pod refusing the stolen key is measured."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from localcluster import Kubectl, LocalCluster
from node.nginx_site import (
    BUNDLE_DIR,
    HERE,
    Site,
    Watch,
    caller_certificate,
    make_namespace,
    open_site,
    restarted_for,
)
from node.operator_pods import get_json
from support.cluster import wait_for

NAMESPACE = "revocation"
SERVER = "web"
LAPTOP = "laptop"
# The label the node's operator publishes mtls-ca-bundle for (deploy/overlays/local).
TRUST_LABEL = "mtls.dev/trust=true"
HOSTNAME = f"{SERVER}.{NAMESPACE}.svc"
COMMAND = str(Path(sys.executable).parent / "mtls-operator")


def crl_checking_conf() -> str:
    """nginx.conf with the CRL of the mounted bundle checked too."""
    conf = (HERE / "nginx.conf").read_text()
    checked = "        ssl_verify_client on;\n"
    assert checked in conf
    return conf.replace(checked, f"{checked}        ssl_crl {BUNDLE_DIR}/ca.crl;\n")


@dataclass(frozen=True)
class ClientFiles:
    certificate: Path
    key: Path
    ca: Path
    serial: int


def client_files(kubectl: Kubectl, directory: Path, secret: str) -> ClientFiles:
    """What a thief copies: the certificate and key of `secret` as it is now."""
    data = get_json(kubectl, "secret", secret, "-n", NAMESPACE)["data"]
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: directory / name for name in ("tls.crt", "tls.key", "ca.crt")}
    for name, path in files.items():
        path.touch(mode=0o600)
        path.write_bytes(base64.b64decode(data[name]))
    serial = x509.load_pem_x509_certificate(files["tls.crt"].read_bytes()).serial_number
    return ClientFiles(files["tls.crt"], files["tls.key"], files["ca.crt"], serial)


def answer(address: str, client: ClientFiles) -> str:
    """What nginx at `address` answers `client`: its HTTP status line's code (nginx answers a
    certificate it refuses with 400 after the handshake), or the TLS error."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(client.certificate, client.key)
    context.load_verify_locations(client.ca)
    try:
        with (
            socket.create_connection((address, 8443), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
        ):
            tls.sendall(f"GET / HTTP/1.0\r\nHost: {HOSTNAME}\r\n\r\n".encode())
            received = b""
            while chunk := tls.recv(4096):
                received += chunk
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return received.split(b" ", 2)[1].decode() if received else "no answer"


def serving_addresses(site: Site) -> list[str]:
    """The nginx pods a Service would route to: Ready, not being deleted."""
    found = []
    for pod in site.pods(SERVER):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        if conditions.get("Ready") == "True" and pod["status"].get("podIP"):
            found.append(pod["status"]["podIP"])
    return found


def answers(site: Site, client: ClientFiles) -> set[str] | None:
    """The answers of every serving nginx pod (None while fewer than two serve)."""
    addresses = serving_addresses(site)
    if len(addresses) < 2:
        return None
    return {answer(address, client) for address in addresses}


def bundle_data(kubectl: Kubectl) -> dict[str, str]:
    found = kubectl(
        "get", "configmap", "mtls-ca-bundle", "-n", NAMESPACE, "-o", "json", check=False
    )
    if found.returncode != 0:
        return {}
    data: dict[str, str] = json.loads(found.stdout).get("data") or {}
    return data


@pytest.fixture(scope="module")
def site(
    node_cluster: LocalCluster, node_kubectl: Kubectl, operator_installed: float
) -> Iterator[Site]:
    kubectl = node_kubectl
    make_namespace(kubectl, NAMESPACE)
    kubectl("label", "namespace", NAMESPACE, TRUST_LABEL)
    for name, usage, spec in (
        (SERVER, "server", {"dnsNames": [HOSTNAME]}),
        (LAPTOP, "client", {"commonName": LAPTOP}),
    ):
        body = {
            "apiVersion": "mtls.dev/v1alpha1",
            "kind": "MtlsCertificate",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"secretName": f"{name}-tls", "usage": usage, **spec},
        }
        kubectl("apply", "-f", "-", input=json.dumps(body))
    for name in (SERVER, LAPTOP):
        kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", f"mtlscertificate/{name}")
    wait_for(
        lambda: "ca.crl" in bundle_data(kubectl),
        timeout=60,
        what="the CRL in the namespace's bundle",
    )
    yield open_site(
        kubectl,
        node_cluster.kubeconfig,
        NAMESPACE,
        followers=(SERVER,),
        others=(),
        caller_certificate=caller_certificate(NAMESPACE),
        nginx_conf=crl_checking_conf(),
        bundle=True,
    )
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=180)


def first_seen(watch: Watch, matches: Any) -> float | None:
    found = watch.first(matches)
    return found[0] if found is not None else None


def test_a_revoked_key_is_refused_by_every_nginx_pod_within_minutes(
    site: Site, tmp_path: Path
) -> None:
    stolen = client_files(site.kubectl, tmp_path / "stolen", f"{LAPTOP}-tls")
    assert answers(site, stolen) == {"200"}, "the laptop's certificate works before"
    digest = restarted_for(site.deployment(SERVER))
    argv = [COMMAND, "revoke", LAPTOP, "-n", NAMESPACE, "--reason", "keyCompromise"]
    argv += ["--kubeconfig", str(site.kubeconfig)]
    with contextlib.ExitStack() as stack:
        bundle = stack.enter_context(Watch(site.kubectl, NAMESPACE, "configmap", "mtls-ca-bundle"))
        deployment = stack.enter_context(Watch(site.kubectl, NAMESPACE, "deployment", SERVER))
        wait_for(lambda: bundle.seen and deployment.seen, timeout=30, what="the watches")
        started = time.time()
        revoked = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert revoked.returncode == 0, revoked.stdout + revoked.stderr
        reissued_at = time.time()

        def all_refuse() -> float | None:
            return time.time() if answers(site, stolen) == {"400"} else None

        refused = wait_for(
            all_refuse,
            timeout=300,
            interval=0.5,
            what="every serving nginx pod refusing the stolen certificate",
        )

        def lists_it(body: dict[str, Any]) -> bool:
            crl = (body.get("data") or {}).get("ca.crl", "")
            return bool(crl) and any(
                entry.serial_number == stolen.serial
                for entry in x509.load_pem_x509_crl(crl.encode())
            )

        in_bundle = first_seen(bundle, lists_it)
        rolled = first_seen(deployment, lambda body: restarted_for(body) != digest)
        site.rolled_out_and_answering(SERVER)

    renewed = client_files(site.kubectl, tmp_path / "renewed", f"{LAPTOP}-tls")
    assert renewed.serial != stolen.serial
    assert renewed.key.read_bytes() != stolen.key.read_bytes()
    assert answers(site, renewed) == {"200"}, "the re-issued certificate is accepted"
    assert answers(site, stolen) == {"400"}
    assert in_bundle is not None
    assert rolled is not None
    assert started < in_bundle < rolled < refused
    assert len(site.rolled_events(SERVER)) == 1, "one roll for the one revocation"
    failed = [request for request in site.requests(SERVER) if not request["ok"]]
    assert not failed, failed[:5]
    print(
        f"\nrevoked {stolen.serial:x}: re-issued (revoke returned) after "
        f"{reissued_at - started:.1f} s, CRL in the bundle after {in_bundle - started:.1f} s, "
        f"nginx rolled after {rolled - started:.1f} s, refused by every nginx pod after "
        f"{refused - started:.1f} s; the re-issued certificate accepted; "
        f"{len(site.requests(SERVER))} requests of the caller, 0 failed"
    )
