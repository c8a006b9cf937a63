"""Zero-downtime CA rotation, in the three steps of the specification, with
two services that keep doing mTLS handshakes through all of it and reload
their files whenever the Secrets change (as pods do with mounted Secrets)."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from kubernetes import client

from operator_process import OperatorProcess
from support.authorities import root_from_ca_init
from support.cluster import (
    b64,
    certificate,
    create_certificate,
    get_certificate,
    get_secret,
    wait_for,
    wait_ready,
)

HOSTNAME = "svc.rotation.example"


class MountedSecret:
    """A Secret as a pod sees it: files in a directory that is swapped
    atomically (through a symlink, like the kubelet's `..data`) when the
    Secret changes."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, root: Path) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.root = root
        self.link = root / "current"
        self.version = 0
        self.resource_version = ""
        root.mkdir(parents=True, exist_ok=True)

    def sync(self) -> None:
        secret = get_secret(self.api, self.namespace, self.name)
        if secret is None or secret["metadata"]["resourceVersion"] == self.resource_version:
            return
        self.version += 1
        target = self.root / f"v{self.version}"
        target.mkdir()
        for key, value in (secret.get("data") or {}).items():
            (target / key).write_bytes(base64.b64decode(value))
        staging = self.root / "next"
        staging.unlink(missing_ok=True)
        staging.symlink_to(target.name)
        staging.replace(self.link)
        self.resource_version = secret["metadata"]["resourceVersion"]

    def file(self, key: str) -> Path:
        return self.link / key


def context_from(mounted: MountedSecret, purpose: ssl.Purpose) -> ssl.SSLContext | None:
    """A TLS context from the files as they are now; None while a swap is
    half-seen (certificate and key from different versions)."""
    context = ssl.create_default_context(purpose)
    try:
        directory = mounted.link.resolve()
        context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        context.load_verify_locations(cafile=str(directory / "ca.crt"))
    except (ssl.SSLError, OSError):
        return None
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass
class Traffic:
    successes: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


class ReloadingServer(threading.Thread):
    def __init__(self, mounted: MountedSecret, traffic: Traffic) -> None:
        super().__init__(daemon=True)
        self.mounted, self.traffic = mounted, traffic
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._context: ssl.SSLContext | None = None
        self._loaded = ""

    def run(self) -> None:
        while not self.traffic.stop.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            context = self._current_context()
            try:
                assert context is not None
                with context.wrap_socket(raw, server_side=True) as tls:
                    tls.settimeout(5)
                    if tls.recv(16) == b"ping":
                        tls.sendall(b"pong")
            except (OSError, ssl.SSLError) as err:
                self.traffic.failures.append(f"server: {err}")
        self.listener.close()

    def _current_context(self) -> ssl.SSLContext | None:
        version = str(self.mounted.link.resolve())
        if version != self._loaded:
            fresh = context_from(self.mounted, ssl.Purpose.CLIENT_AUTH)
            if fresh is not None:
                self._context, self._loaded = fresh, version
        return self._context


class ReloadingClient(threading.Thread):
    def __init__(self, mounted: MountedSecret, port: int, traffic: Traffic) -> None:
        super().__init__(daemon=True)
        self.mounted, self.port, self.traffic = mounted, port, traffic
        self._context: ssl.SSLContext | None = None
        self._loaded = ""

    def run(self) -> None:
        while not self.traffic.stop.is_set():
            version = str(self.mounted.link.resolve())
            if version != self._loaded:
                fresh = context_from(self.mounted, ssl.Purpose.SERVER_AUTH)
                if fresh is not None:
                    self._context, self._loaded = fresh, version
            assert self._context is not None
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
                    self._context.wrap_socket(raw, server_hostname=HOSTNAME) as tls,
                ):
                    tls.sendall(b"ping")
                    if tls.recv(16) != b"pong":
                        raise ssl.SSLError("no pong")
                self.traffic.successes += 1
            except (OSError, ssl.SSLError) as err:
                self.traffic.failures.append(f"client: {err}")
            time.sleep(0.05)


def bundle_size(api: client.ApiClient, namespace: str, name: str) -> int:
    secret = get_secret(api, namespace, name)
    return (
        len(x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["ca.crt"])))
        if secret
        else 0
    )


def issuer_key_id(api: client.ApiClient, namespace: str, name: str) -> bytes:
    secret = get_secret(api, namespace, name)
    assert secret is not None
    leaf = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    return (
        leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        or b""
    )


def wait_for_bundles(api: client.ApiClient, namespace: str, roots: int) -> None:
    for name in ("svc-tls", "cli-tls"):

        def trusted(name: str = name) -> bool | None:
            return bundle_size(api, namespace, name) == roots or None

        wait_for(trusted, timeout=15, what=f"{name} to trust {roots} root(s)")


def test_ca_rotation_without_a_failed_handshake(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    work = Path(tempfile.mkdtemp(prefix="rotation-"))
    old_cert, old_key = root_from_ca_init(work / "old", "Rotation CA")
    new_cert, new_key = root_from_ca_init(
        work / "new", "Rotation CA"
    )  # same name: only the key tells them apart
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="team-ca"),
            type="kubernetes.io/tls",
            data={"tls.crt": b64(old_cert), "tls.key": b64(old_key), "ca.crt": b64(old_cert)},
        ),
    )
    create_certificate(
        kube_api,
        namespace,
        certificate("svc", "server", commonName=HOSTNAME, caSecretName="team-ca"),
    )
    create_certificate(
        kube_api, namespace, certificate("cli", "client", commonName="cli", caSecretName="team-ca")
    )
    serials = {
        name: wait_ready(kube_api, namespace, name)["status"]["serialNumber"]
        for name in ("svc", "cli")
    }

    server_files = MountedSecret(kube_api, namespace, "svc-tls", work / "server")
    client_files = MountedSecret(kube_api, namespace, "cli-tls", work / "client")
    server_files.sync()
    client_files.sync()
    traffic = Traffic()
    syncer_stop = threading.Event()

    def keep_syncing() -> None:
        while not syncer_stop.is_set():
            for mounted in (server_files, client_files):
                mounted.sync()
            time.sleep(0.2)

    syncer = threading.Thread(target=keep_syncing, daemon=True)
    server = ReloadingServer(server_files, traffic)
    client_thread = ReloadingClient(client_files, server.port, traffic)
    for thread in (syncer, server, client_thread):
        thread.start()
    try:
        time.sleep(2)
        assert traffic.successes > 0, traffic.failures

        # 1) Trust the new root too: only ca.crt changes in the leaf Secrets.
        core.patch_namespaced_secret(
            "team-ca", namespace, {"data": {"ca.crt": b64(old_cert + new_cert)}}
        )
        wait_for_bundles(kube_api, namespace, 2)
        for name in ("svc", "cli"):
            body = get_certificate(kube_api, namespace, name)
            assert body is not None
            assert body["status"]["serialNumber"] == serials[name], "step 1 must not re-issue"
        time.sleep(2)

        # 2) Sign with the new CA: every leaf is re-issued.
        core.patch_namespaced_secret(
            "team-ca", namespace, {"data": {"tls.crt": b64(new_cert), "tls.key": b64(new_key)}}
        )
        new_key_id = (
            x509.load_pem_x509_certificate(new_cert)
            .extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            .value.digest
        )
        for name in ("svc-tls", "cli-tls"):

            def reissued(name: str = name) -> bool | None:
                return issuer_key_id(kube_api, namespace, name) == new_key_id or None

            wait_for(reissued, timeout=15, what=f"{name} re-issued by the new CA")
        time.sleep(2)

        # 3) Drop the old root.
        core.patch_namespaced_secret("team-ca", namespace, {"data": {"ca.crt": b64(new_cert)}})
        wait_for_bundles(kube_api, namespace, 1)
        time.sleep(2)
    finally:
        traffic.stop.set()
        syncer_stop.set()
        for thread in (syncer, server, client_thread):
            thread.join(timeout=10)

    assert traffic.failures == [], traffic.failures[:5]
    assert traffic.successes > 100, traffic.successes
    # The files the services ended with verify against the new root alone.
    assert (
        hashlib.sha256(server_files.file("ca.crt").read_bytes()).digest()
        == hashlib.sha256(new_cert).digest()
    )
    for name in ("svc", "cli"):
        status = wait_ready(kube_api, namespace, name)["status"]
        assert status["serialNumber"] != serials[name]
        assert status["revision"] == 2
    assert os.path.islink(server_files.link)
