"""A local Kubernetes cluster: etcd, kube-apiserver and kube-controller-manager, and a node.

It runs the pinned binaries built by hack/control-plane/build.sh the way controller-runtime's
envtest does, every process on loopback with freshly generated credentials. Unlike envtest it
also runs kube-controller-manager, so garbage collection, namespace deletion and
ServiceAccounts behave as they do in a real cluster.

With a node (`node=NodeSpec(...)`; `up` starts one unless told `--no-node`) it also runs
kube-scheduler, and a kubelet with containerd and runc on this machine (hack/localnode.py):
pods are scheduled, pull nothing, run the images hack/images.py built, and reach the API
server at the `kubernetes` Service's address, as in any cluster.

Command line (the state directory defaults to .cluster/ at the repository root):

    python hack/localcluster.py up|down|status [--dir DIR] [--no-node]

From Python (the e2e tests do this):

    with LocalCluster.start(state_dir, control_plane_bin_dir()) as cluster:
        Kubectl(cluster.bin_dir / "kubectl", cluster.kubeconfig)("get", "namespaces")
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import images
import localnode
from localnode import NodePaths, NodeSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane" / "build.sh"
DEFAULT_STATE_DIR = REPO_ROOT / ".cluster"

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range: the ClusterIP of the `kubernetes` Service.
KUBERNETES_SERVICE_IP = "10.0.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"

# Controllers with nothing to do here: pods' addresses come from the node's own CNI
# configuration, and there is no storage to attach. Skipping them saves CPU on small machines.
IDLE_CONTROLLERS = (
    "node-ipam-controller",
    "persistentvolume-attach-detach-controller",
    "persistentvolume-binder-controller",
    "persistentvolume-expander-controller",
)
# Controllers that only act on nodes: without a kubelet they are idle too.
NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "device-taint-eviction-controller",
    "ttl-controller",
)

# Everything `down` removes. Logs are kept on purpose so a failed run can be inspected.
STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
DATA_ENTRIES = (
    "etcd",
    "pki",
    KUBECONFIG_FILE,
    "kube-controller-manager.kubeconfig",
    "kube-scheduler.kubeconfig",
    STATE_FILE,
)

ETCD_TIMEOUT = 30.0
APISERVER_TIMEOUT = 90.0
CONTROLLER_MANAGER_TIMEOUT = 90.0
NODE_TIMEOUT = 90.0
STOP_GRACE_SECONDS = 5.0
PORT_ATTEMPTS = 3
LOG_TAIL_LINES = 25

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ClusterError(Exception):
    """A control-plane operation failed. `log_tail` holds the failing component's last lines."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class _PortTaken(ClusterError):
    """Another process grabbed one of our ports between picking and binding it."""


# --- binaries -------------------------------------------------------------------------------


def control_plane_bin_dir() -> Path:
    """Build (or reuse from cache) the control-plane binaries; return their directory.

    The build script's stderr passes through so a cold build's progress stays visible.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    bin_dir = Path(lines[-1])
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        if not os.access(bin_dir / name, os.X_OK):
            raise ClusterError(f"{BUILD_SCRIPT} printed {bin_dir}, which has no {name}")
    return bin_dir


def kubectl_binary() -> Path:
    """The pinned kubectl build (its server version and kustomize are what the
    tests expect); any installed kubectl when it cannot be built here (for
    example without Go)."""
    try:
        return control_plane_bin_dir() / "kubectl"
    except ClusterError:
        found = shutil.which("kubectl")
        if found is None:
            raise
        return Path(found)


@dataclass(frozen=True)
class Kubectl:
    """Runs kubectl against one cluster."""

    binary: Path
    kubeconfig: Path
    # A private discovery cache keeps runs hermetic and out of ~/.kube.
    cache_dir: Path | None = None

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig)]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        result = subprocess.run(
            [*argv, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} exited with {result.returncode}: {result.stderr.strip()}"
            )
        return result


# --- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeyPair:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return _private_pem(self.key)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    lifetime: datetime.timedelta,
) -> x509.CertificateBuilder:
    # Backdated a little so a clock that is slightly behind still accepts fresh certificates.
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _new_ca(common_name: str) -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    certificate = (
        _builder(subject, subject, key, datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return _KeyPair(certificate, key)


def _new_leaf(
    issuer: _KeyPair,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    names: Sequence[str] = (),
    addresses: Sequence[str] = (),
) -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_key = issuer.key.public_key()
    builder = (
        _builder(subject, issuer.certificate.subject, key, datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
    )
    if names or addresses:
        alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    return _KeyPair(builder.sign(issuer.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class _ClientCredentials:
    admin: _KeyPair
    controller_manager: _KeyPair
    server_ca_pem: bytes
    scheduler: _KeyPair | None = None
    kubelet: _KeyPair | None = None


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created with the final mode so private keys are never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _write_pair(pki: Path, stem: str, pair: _KeyPair) -> None:
    _write(pki / f"{stem}.crt", pair.cert_pem)
    _write(pki / f"{stem}.key", pair.key_pem, secret=True)


def _generate_credentials(pki: Path, node: bool) -> _ClientCredentials:
    """Write every certificate and key the control plane (and the node) needs.

    Serving and client certificates come from separate CAs, as in kubeadm, so a serving
    certificate can never be used to log in. The CA keys stay in memory only.
    """
    server_ca = _new_ca("mtls-operator local cluster CA")
    client_ca = _new_ca("mtls-operator local cluster client CA")
    _write(pki / "ca.crt", server_ca.cert_pem)
    _write(pki / "client-ca.crt", client_ca.cert_pem)

    apiserver = _new_leaf(
        server_ca,
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        addresses=("127.0.0.1", "::1", KUBERNETES_SERVICE_IP),
    )
    _write_pair(pki, "apiserver", apiserver)
    node_credentials = _node_credentials(pki, server_ca, client_ca) if node else {}
    controller_manager_serving = _new_leaf(
        server_ca,
        _name("kube-controller-manager"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        names=("localhost",),
        addresses=("127.0.0.1",),
    )
    _write_pair(pki, "controller-manager-serving", controller_manager_serving)

    service_account_key = ec.generate_private_key(ec.SECP256R1())
    _write(pki / "sa.key", _private_pem(service_account_key), secret=True)
    _write(
        pki / "sa.pub",
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )

    admin = _new_leaf(client_ca, _name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    # system:masters keeps this simple; the kube-controller-manager ClusterRole would also do.
    controller_manager = _new_leaf(
        client_ca,
        _name("system:kube-controller-manager", "system:masters"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    # On disk as well as inside the kubeconfig so health probes (and curl) can use them.
    _write_pair(pki, "admin", admin)
    return _ClientCredentials(admin, controller_manager, server_ca.cert_pem, **node_credentials)


def _node_credentials(pki: Path, server_ca: _KeyPair, client_ca: _KeyPair) -> dict[str, _KeyPair]:
    """The node's identity, its serving certificate, and the API server's and the scheduler's
    client certificates, each as kubeadm makes them."""
    # system:nodes and system:node:<name>: the Node authorizer and NodeRestriction apply.
    kubelet = _new_leaf(
        client_ca,
        _name(f"system:node:{localnode.NODE_NAME}", "system:nodes"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    serving = _new_leaf(
        server_ca,
        _name(localnode.NODE_NAME),
        ExtendedKeyUsageOID.SERVER_AUTH,
        names=(localnode.NODE_NAME,),
        addresses=(localnode.NODE_IP,),
    )
    _write_pair(pki, "kubelet-serving", serving)
    # The API server calls the kubelet (logs, exec, port-forward) as a cluster administrator.
    apiserver_client = _new_leaf(
        client_ca,
        _name("kube-apiserver-kubelet-client", "system:masters"),
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    _write_pair(pki, "apiserver-kubelet-client", apiserver_client)
    scheduler = _new_leaf(
        client_ca, _name("system:kube-scheduler"), ExtendedKeyUsageOID.CLIENT_AUTH
    )
    scheduler_serving = _new_leaf(
        server_ca,
        _name("kube-scheduler"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        names=("localhost",),
        addresses=("127.0.0.1",),
    )
    _write_pair(pki, "scheduler-serving", scheduler_serving)
    return {"kubelet": kubelet, "scheduler": scheduler}


def _kubeconfig(server: str, ca_pem: bytes, user: str, client: _KeyPair) -> bytes:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
        "preferences": {},
    }
    # JSON is valid YAML, so kubectl and client libraries read it without a YAML writer here.
    return (json.dumps(config, indent=2) + "\n").encode()


# --- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int = 0
    kubelet: int = 0
    kubelet_healthz: int = 0


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is picked, so the kernel hands out distinct ones.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _pick_ports(node: bool) -> Ports:
    if not node:
        return Ports(*_free_ports(4))
    # The API server of a cluster with a node listens where pods dial it (localnode).
    etcd_client, etcd_peer, manager, scheduler, kubelet, healthz = _free_ports(6)
    return Ports(
        etcd_client,
        etcd_peer,
        localnode.API_SERVICE_PORT,
        manager,
        scheduler,
        kubelet,
        healthz,
    )


@dataclass
class _Process:
    name: str
    pid: int
    binary: str
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_runs(self.pid, self.binary)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def signal(self, signum: signal.Signals) -> None:
        # Each component leads its own process group; signal the group so nothing is left over.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "binary": self.binary, "log": str(self.log)}


def _pid_runs(pid: int, binary: str) -> bool:
    """Whether `pid` is still the process we started (not a zombie, not a reused pid)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        # The state letter follows the parenthesised command name, which may contain spaces.
        state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    # Orphans are reaped by pid 1, which in some containers never happens: treat zombies as gone.
    return state not in {"Z", "X"} and argv0 == binary


def _spawn(
    name: str, argv: list[str], log_dir: Path, extra_env: dict[str, str] | None = None
) -> _Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    env = {**os.environ, **(extra_env or {})}
    # Everything talks over loopback or the node's bridge; a proxy must not get in the way.
    env["NO_PROXY"] = env["no_proxy"] = (
        f"127.0.0.1,localhost,::1,{localnode.API_SERVICE_IP},{localnode.POD_SUBNET}"
    )
    with log.open("ab") as handle:
        # A new session keeps the component alive after `up` exits and out of the terminal's
        # process group, so Ctrl-C in the shell does not reach it.
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    return _Process(name, popen.pid, argv[0], log, popen)


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop_processes(processes: Sequence[_Process]) -> None:
    """SIGTERM, then SIGKILL after a grace period; the API clients stop before etcd."""
    clients = [p for p in processes if p.name != "etcd"]
    etcd = [p for p in processes if p.name == "etcd"]
    for group in (clients, etcd):
        running = [p for p in group if p.alive()]
        for process in running:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in running:
            if not process.wait(max(0.0, deadline - time.monotonic())):
                process.signal(signal.SIGKILL)
                process.wait(STOP_GRACE_SECONDS)


# --- health ---------------------------------------------------------------------------------

# Proxies from the environment must not apply to loopback probes.
_NO_PROXY = urllib.request.ProxyHandler({})


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, str]:
    handlers: list[urllib.request.BaseHandler] = [_NO_PROXY]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (OSError, ssl.SSLError):
        return 0, ""


def _admin_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def _wait_healthy(process: _Process, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if not process.alive():
            code = process.exit_code()
            status = f"exited with code {code}" if code is not None else "exited"
            raise _failure(process, f"{process.name} {status} during start-up")
        if time.monotonic() > deadline:
            raise _failure(process, f"{process.name} was not healthy after {timeout:.0f}s")
        time.sleep(0.1)


def _failure(process: _Process, message: str) -> ClusterError:
    tail = _tail(process.log)
    kind = _PortTaken if "address already in use" in tail else ClusterError
    return kind(f"{message} (log: {process.log})", tail)


# --- the cluster ----------------------------------------------------------------------------


class LocalCluster:
    """A running etcd + kube-apiserver + kube-controller-manager (+ a node), owned by
    `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path,
        ports: Ports,
        processes: list[_Process],
        startup_seconds: float,
        *,
        node: NodeSpec | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.bin_dir = bin_dir
        self.ports = ports
        self.processes = processes
        self.startup_seconds = startup_seconds
        self.node = node

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / KUBECONFIG_FILE

    @property
    def api_host(self) -> str:
        return localnode.API_SERVICE_IP if self.node is not None else "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.api_host}:{self.ports.apiserver}"

    @property
    def node_paths(self) -> NodePaths:
        return NodePaths.of(self.state_dir)

    @property
    def kubectl(self) -> Kubectl:
        return Kubectl(self.bin_dir / "kubectl", self.kubeconfig)

    @classmethod
    def start(
        cls, state_dir: Path, bin_dir: Path, log: Log = _stderr, node: NodeSpec | None = None
    ) -> LocalCluster:
        """Start a fresh control plane in `state_dir` and wait until it serves requests; with
        `node`, also a node, and wait until it is Ready.

        Data a previous cluster left in `state_dir` is deleted first, so stop that one before.
        """
        state_dir = state_dir.resolve()
        bin_dir = bin_dir.resolve()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return cls._start_once(state_dir, bin_dir, log, node)
            except _PortTaken as error:
                if attempt == PORT_ATTEMPTS:
                    raise
                log(f"{error}; retrying with other ports")
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls, state_dir: Path, bin_dir: Path, log: Log, node: NodeSpec | None
    ) -> LocalCluster:
        started = time.monotonic()
        remove_data(state_dir)
        # The logs of an earlier cluster are kept until the next one starts.
        shutil.rmtree(state_dir / "logs", ignore_errors=True)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        cluster = cls(state_dir, bin_dir, _pick_ports(node is not None), [], 0.0, node=node)
        try:
            cluster._boot(log)
        except BaseException:
            # Includes KeyboardInterrupt: never leave half a control plane running.
            cluster.stop()
            raise
        cluster.startup_seconds = time.monotonic() - started
        cluster._save()
        return cluster

    def _boot(self, log: Log) -> None:
        pki = self.state_dir / "pki"
        if self.node is not None:
            # First: the API server listens on the node's bridge.
            self._claim_host()
        credentials = _generate_credentials(pki, node=self.node is not None)
        kubeconfigs = {
            self.kubeconfig: ("admin", credentials.admin),
            self.state_dir / "kube-controller-manager.kubeconfig": (
                "kube-controller-manager",
                credentials.controller_manager,
            ),
        }
        if credentials.scheduler is not None and credentials.kubelet is not None:
            kubeconfigs[self.state_dir / "kube-scheduler.kubeconfig"] = (
                "kube-scheduler",
                credentials.scheduler,
            )
            self.node_paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            kubeconfigs[self.node_paths.kubelet_kubeconfig] = (
                f"system:node:{localnode.NODE_NAME}",
                credentials.kubelet,
            )
        for path, (user, pair) in kubeconfigs.items():
            _write(
                path, _kubeconfig(self.server, credentials.server_ca_pem, user, pair), secret=True
            )
        context = _admin_context(pki)
        # kube-controller-manager's /healthz is open to anonymous clients; only verify the server.
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))

        log(f"starting etcd on 127.0.0.1:{self.ports.etcd_client}")
        etcd = self._launch("etcd", self._etcd_args())
        _wait_healthy(etcd, self._etcd_healthy, ETCD_TIMEOUT)

        log(f"starting kube-apiserver on {self.server}")
        apiserver = self._launch("kube-apiserver", self._apiserver_args(pki))
        _wait_healthy(apiserver, lambda: self._apiserver_ready(context), APISERVER_TIMEOUT)

        log("starting kube-controller-manager")
        manager = self._launch("kube-controller-manager", self._controller_manager_args(pki))
        # Healthy is not enough: the default ServiceAccount proves the controllers are working,
        # and callers may request tokens for it right away.
        _wait_healthy(
            manager,
            lambda: self._controller_manager_ready(anonymous, context),
            CONTROLLER_MANAGER_TIMEOUT,
        )
        if self.node is not None:
            log("starting kube-scheduler")
            scheduler = self._launch("kube-scheduler", self._scheduler_args(pki))
            healthz = f"https://127.0.0.1:{self.ports.scheduler}/healthz"
            _wait_healthy(
                scheduler, lambda: _get(healthz, anonymous)[0] == 200, CONTROLLER_MANAGER_TIMEOUT
            )
            self._start_node(self.node, context, log, import_images=True)

    def _claim_host(self) -> None:
        claim = localnode.HostClaim.load()
        running = False
        if claim is not None and claim.state_dir != self.state_dir:
            other = LocalCluster.attach(claim.state_dir)
            running = claim.claimant_runs() or (other is not None and other.healthy())
        localnode.claim_host(self.state_dir, self.node_bin_dir, running)

    @property
    def node_bin_dir(self) -> Path:
        if self.node is None:
            raise ClusterError("this cluster has no node")
        return self.node.bin_dir

    def _start_node(
        self, node: NodeSpec, context: ssl.SSLContext, log: Log, import_images: bool
    ) -> None:
        paths = self.node_paths
        localnode.write_config(
            paths, node, self.state_dir / "pki", self.ports.kubelet, self.ports.kubelet_healthz
        )
        log("starting containerd")
        containerd = self._launch(
            "containerd",
            localnode.containerd_argv(paths, node),
            env=localnode.runtime_env(node),
        )
        _wait_healthy(containerd, lambda: localnode.runtime_answers(paths, node), NODE_TIMEOUT)
        if import_images:
            log(f"importing {len(node.images)} images into the node")
            localnode.import_images(paths, node)
        log(f"starting the kubelet of node {localnode.NODE_NAME}")
        kubelet = self._launch("kubelet", localnode.kubelet_argv(paths, self.bin_dir / "kubelet"))
        _wait_healthy(kubelet, lambda: self._node_ready(context), NODE_TIMEOUT)

    def restart_node(self, log: Log = _stderr) -> None:
        """Stop the kubelet and containerd (SIGTERM, as a service manager would) and start
        them again; the containers run on meanwhile, under their shims."""
        if self.node is None:
            raise ClusterError("this cluster has no node")
        node_processes = [p for p in self.processes if p.name in {"kubelet", "containerd"}]
        _stop_processes(node_processes)
        for process in node_processes:
            self.processes.remove(process)
        self._save()
        context = _admin_context(self.state_dir / "pki")
        self._start_node(self.node, context, log, import_images=False)
        self._save()

    def _launch(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Process:
        # A bare name is one of the control plane's binaries; node binaries come with a path.
        argv = args if args and args[0].startswith("/") else [str(self.bin_dir / name), *args]
        process = _spawn(name, argv, self.state_dir / "logs", env)
        self.processes.append(process)
        # Saved after every launch so `down` can clean up even if this process is killed.
        self._save()
        return process

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            # Throw-away data: skipping fsync makes every write (and start-up) much faster.
            "--unsafe-no-fsync",
            f"--quota-backend-bytes={2 * 1024**3}",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: Path) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            f"--secure-port={self.ports.apiserver}",
            f"--bind-address={self.api_host}",
            f"--advertise-address={self.api_host}",
            # Since v1.37 the endpoint reconciler refuses a loopback advertise address. Nothing
            # here reaches the API server through the `kubernetes` Service, so skip it.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            # As a real cluster runs: nodes are authorised by the Node authorizer and
            # limited by NodeRestriction (what a kubelet may ask, pod certificates included).
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            *(self._kubelet_client_args(pki) if self.node is not None else []),
        ]

    def _kubelet_client_args(self, pki: Path) -> list[str]:
        """How the API server calls the kubelet (logs, exec, port-forward, proxy): at the
        node's address, verifying its serving certificate, with a client certificate."""
        return [
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _scheduler_args(self, pki: Path) -> list[str]:
        kubeconfig = self.state_dir / "kube-scheduler.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--authentication-skip-lookup",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            f"--secure-port={self.ports.scheduler}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki / 'scheduler-serving.crt'}",
            f"--tls-private-key-file={pki / 'scheduler-serving.key'}",
            "--leader-elect=false",
        ]

    def _node_ready(self, context: ssl.SSLContext) -> bool:
        status, body = _get(f"{self.server}/api/v1/nodes/{localnode.NODE_NAME}", context)
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _controller_manager_args(self, pki: Path) -> list[str]:
        kubeconfig = self.state_dir / "kube-controller-manager.kubeconfig"
        idle = IDLE_CONTROLLERS if self.node is not None else IDLE_CONTROLLERS + NODE_CONTROLLERS
        controllers = ",".join(["*", *(f"-{name}" for name in idle)])
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # The API server runs without a front proxy, so the in-cluster authentication
            # ConfigMap has no request-header CA and looking it up only produces error spam.
            "--authentication-skip-lookup",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            f"--secure-port={self.ports.controller_manager}",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki / 'controller-manager-serving.crt'}",
            f"--tls-private-key-file={pki / 'controller-manager-serving.key'}",
            # Needed by the serviceaccount-token controller, which fills token Secrets.
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            f"--controllers={controllers}",
            "--leader-elect=false",
        ]

    def _etcd_healthy(self) -> bool:
        status, body = _get(f"http://127.0.0.1:{self.ports.etcd_client}/health")
        if status != 200:
            return False
        try:
            return bool(json.loads(body).get("health") == "true")
        except ValueError:
            return False

    def _apiserver_ready(self, context: ssl.SSLContext) -> bool:
        status, body = _get(f"{self.server}/readyz", context)
        return status == 200 and body.strip() == "ok"

    def _controller_manager_ready(self, anonymous: ssl.SSLContext, context: ssl.SSLContext) -> bool:
        status, _ = _get(f"https://127.0.0.1:{self.ports.controller_manager}/healthz", anonymous)
        if status != 200:
            return False
        status, _ = _get(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default", context
        )
        return status == 200

    # --- Faults, for the tests that show what survives them. ---

    def process(self, name: str) -> _Process:
        [found] = [p for p in self.processes if p.name == name]
        return found

    def freeze(self, name: str) -> None:
        """SIGSTOP: the component holds its connections and answers nothing."""
        self.process(name).signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        self.process(name).signal(signal.SIGCONT)

    def restart_apiserver(self) -> None:
        """Kill kube-apiserver as a crash or an OOM kill would (SIGKILL: no
        graceful drain of the requests in flight), start it again on the same
        port, and wait until it is ready."""
        old = self.process("kube-apiserver")
        old.signal(signal.SIGKILL)
        old.wait(10)
        self.processes.remove(old)
        pki = self.state_dir / "pki"
        apiserver = self._launch("kube-apiserver", self._apiserver_args(pki))
        context = _admin_context(pki)
        _wait_healthy(apiserver, lambda: self._apiserver_ready(context), APISERVER_TIMEOUT)

    def healthy(self) -> bool:
        """All processes run and the API server reports ready."""
        if not self.processes or not all(p.alive() for p in self.processes):
            return False
        pki = self.state_dir / "pki"
        try:
            context = _admin_context(pki)
        except (OSError, ssl.SSLError):
            return False
        return self._apiserver_ready(context)

    def stop(self, remove: bool = True) -> None:
        """Stop every component and, unless `remove` is false, delete the data (not the logs).

        The node goes first, and gives back all it took of the host (localnode.clean_host).
        """
        if self.node is not None:
            _stop_processes([p for p in self.processes if p.name in {"kubelet", "containerd"}])
            claim = localnode.HostClaim.load()
            if claim is not None and claim.state_dir == self.state_dir:
                localnode.clean_host()
        _stop_processes(self.processes)
        if remove:
            remove_data(self.state_dir)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # state.json lets a later `down` or `status` find the processes of an earlier `up`.

    def _save(self) -> None:
        state = {
            "bin_dir": str(self.bin_dir),
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports.__dict__,
            "processes": [p.to_json() for p in self.processes],
            "startup_seconds": round(self.startup_seconds, 2),
            "node": self.node.to_json() if self.node is not None else None,
        }
        _write(self.state_dir / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode())

    @classmethod
    def attach(cls, state_dir: Path) -> LocalCluster | None:
        """The cluster recorded in `state_dir`, running or not; None without a state file."""
        state_dir = state_dir.resolve()
        try:
            state = json.loads((state_dir / STATE_FILE).read_text())
            processes = [
                _Process(p["name"], int(p["pid"]), p["binary"], Path(p["log"]))
                for p in state["processes"]
            ]
            return cls(
                state_dir,
                Path(state["bin_dir"]),
                Ports(**state["ports"]),
                processes,
                float(state["startup_seconds"]),
                node=NodeSpec.from_json(state["node"]) if state.get("node") else None,
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise ClusterError(f"{state_dir / STATE_FILE} is unreadable: {error}") from error


def remove_data(state_dir: Path) -> None:
    """Delete what a cluster leaves in `state_dir`; only known entries, never the whole dir."""
    for entry in DATA_ENTRIES:
        path = state_dir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# --- command line ---------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise `up`/`down`/`status` on one state dir (e.g. two `make cluster-up` at once)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def default_node() -> NodeSpec:
    """The node's runtime, built or taken from the cache, with the pause image only: the
    images the pods run are loaded by `make image` (hack/images.py load)."""
    return NodeSpec(images.node_bin_dir(), tuple(images.built_tarballs([images.PAUSE])))


def _up(state_dir: Path, node: bool) -> int:
    existing = LocalCluster.attach(state_dir)
    if existing is not None and existing.healthy():
        _stderr(f"cluster already running at {existing.server}")
        print(f"export KUBECONFIG={existing.kubeconfig}")
        return 0
    if existing is not None:
        _stderr("removing the stale state of a cluster that is no longer running")
        existing.stop()
    bin_dir = control_plane_bin_dir()
    cluster = LocalCluster.start(state_dir, bin_dir, node=default_node() if node else None)
    with_node = f" with node {localnode.NODE_NAME}" if node else ""
    _stderr(
        f"cluster ready{with_node} in {cluster.startup_seconds:.1f}s at {cluster.server} "
        f"(logs: {state_dir / 'logs'})"
    )
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _down(state_dir: Path, node: bool) -> int:
    existing = LocalCluster.attach(state_dir)
    if existing is None:
        _stderr(f"no cluster recorded in {state_dir}")
    else:
        existing.stop()
        _stderr("cluster stopped")
    remove_data(state_dir)
    release_dead_node()
    return 0


def release_dead_node() -> None:
    """Give back the host from a node whose cluster no longer runs (a killed test's)."""
    claim = localnode.HostClaim.load()
    if claim is None:
        return
    owner = LocalCluster.attach(claim.state_dir)
    if owner is None or not owner.healthy():
        _stderr(f"removing what the node of {claim.state_dir} left on this machine")
        localnode.clean_host()


def _status(state_dir: Path, node: bool) -> int:
    existing = LocalCluster.attach(state_dir)
    if existing is None:
        print(f"not running (no {STATE_FILE} in {state_dir})")
        return 1
    healthy = existing.healthy()
    print(f"{'running' if healthy else 'NOT healthy'}: {existing.server}")
    for process in existing.processes:
        print(
            f"  {process.name:<24} pid {process.pid:<8} "
            f"{'up' if process.alive() else 'down':<5} {process.log}"
        )
    print(f"  ports: {existing.ports.__dict__}")
    print(f"  kubeconfig: {existing.kubeconfig}")
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localcluster.py", description="Run a local Kubernetes control plane."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"state directory (default: {DEFAULT_STATE_DIR})",
    )
    parser.add_argument(
        "--no-node", dest="node", action="store_false", help="up: the control plane only"
    )
    args = parser.parse_args(argv)
    state_dir: Path = args.dir.resolve()
    commands = {"up": _up, "down": _down, "status": _status}
    try:
        with _locked(state_dir):
            return commands[args.command](state_dir, args.node)
    except (ClusterError, localnode.NodeError, images.ImageError) as error:
        _stderr(f"localcluster.py {args.command}: {error}")
        if isinstance(error, ClusterError) and error.log_tail:
            _stderr(error.log_tail)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
