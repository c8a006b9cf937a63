"""A real node for the local control plane: containerd, runc and the kubelet on this machine.

`hack/localcluster.py` starts it with the control plane (`LocalCluster.start(..., node=True)`,
`make cluster-up`). This module holds what a node needs of the host, and gives it back:

- **A pod network** of one bridge, `mtls0`, with the reference CNI plugins (bridge,
  host-local, loopback). The bridge holds the node's address (10.244.0.1) and the
  `kubernetes` Service's ClusterIP (10.0.0.1), on which the API server listens at port 443.
  So a pod reaches the API server exactly as in any cluster, through the
  `KUBERNETES_SERVICE_HOST/PORT` the kubelet injects, without host networking, and pods
  reach each other by their IPs. Nothing is forwarded or masqueraded: traffic never leaves
  this machine.
- **containerd and runc** with every path in the node's state directory, except those their
  code fixes (`/run/containerd/s` for the shims' sockets); NRI off; and a registry
  configuration that refuses every pull at once (a closed loopback port), so that the node
  never fetches an image from outside: every image is imported (`hack/images.py`).
- **The kubelet** with a real node identity (`system:node:mtls-node`, checked by the Node
  authorizer and NodeRestriction), a serving certificate the API server verifies, x509 and
  webhook authentication, webhook authorisation, and the settings this kind of machine
  needs (cgroup v1 with cgroupfs, OOM scores it cannot lower, a shared disk).

Only one node runs on a machine: the kubelet's device-plugin directory, the pods' cgroups and
the container log links have fixed paths. `/run/mtls-operator-node.json` names the state
directory of the node that holds the host; `clean_host()` gives back everything a node took
(processes, mounts, cgroups, the bridge, the fixed paths it created), also for a node whose
test was killed, and is what `make cluster-down` runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import images

NODE_NAME = "mtls-node"
BRIDGE = "mtls0"
# The bridge's own MAC address, set once (locally administered: "mtls0" in hex). A bridge
# whose address was never set takes the lowest of its ports' and changes when that pod
# goes: every other pod then sends to the node and the API server at a stale address until
# its ARP entry expires, up to a minute of timeouts (a leader lost its Lease to it).
BRIDGE_MAC = "02:6d:74:6c:73:30"
POD_SUBNET = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
# The API server listens on the `kubernetes` Service's ClusterIP, port 443: what pods dial.
API_SERVICE_IP = "10.0.0.1"
API_SERVICE_PORT = 443
SANDBOX_IMAGE = "localhost/pause:local"

HOST_CLAIM = Path("/run/mtls-operator-node.json")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Paths the kubelet and the shims use whatever their configured roots are.
FIXED_PATHS = (
    Path("/run/containerd"),
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    # libcni's cache of each pod's network, whatever the CNI configuration says.
    Path("/var/lib/cni"),
)

NODE_DIR = "node"
STOP_GRACE_SECONDS = 10.0


class NodeError(Exception):
    """The node could not take or give back something of the host."""


@dataclass(frozen=True)
class NodeSpec:
    """What a node runs: its runtime's binaries and the images it may run."""

    # containerd, ctr, the shim, runc, the CNI plugins (hack/control-plane/node/build.sh).
    bin_dir: Path
    # docker-archive tarballs imported at start-up (hack/images.py); at least the pause image.
    images: tuple[Path, ...]
    # How often the kubelet refreshes mounted Secrets and ConfigMaps (its default: 1m).
    sync_frequency: str = "1m"

    def to_json(self) -> dict[str, Any]:
        return {
            "bin_dir": str(self.bin_dir),
            "images": [str(path) for path in self.images],
            "sync_frequency": self.sync_frequency,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> NodeSpec:
        return cls(
            Path(body["bin_dir"]),
            tuple(Path(path) for path in body["images"]),
            str(body["sync_frequency"]),
        )


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result


# --- the layout of a node's state directory ---------------------------------------------------


@dataclass(frozen=True)
class NodePaths:
    """Where one node keeps everything: `<cluster state dir>/node/`."""

    root: Path

    @classmethod
    def of(cls, state_dir: Path) -> NodePaths:
        return cls(state_dir / NODE_DIR)

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def registry_hosts(self) -> Path:
        return self.root / "registry-hosts"


# --- configuration -----------------------------------------------------------------------------


def containerd_config(paths: NodePaths, bin_dir: Path) -> str:
    """containerd's configuration (version 3, containerd 2.x)."""
    state = paths.root / "containerd"

    def quoted(path: Path | str) -> str:
        return json.dumps(str(path))

    return f"""version = 3
root = {quoted(state / "root")}
state = {quoted(state / "state")}

[grpc]
  address = {quoted(paths.containerd_socket)}

[plugins.'io.containerd.internal.v1.opt']
  path = {quoted(state / "opt")}

# NRI would open a socket at a fixed path; nothing here uses it.
[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: no OOM score can go below containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = {quoted(bin_dir / "runc")}
  Root = {quoted(state / "runc")}
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = [{quoted(bin_dir / "cni")}]
  conf_dir = {quoted(paths.cni_conf_dir)}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = {quoted(SANDBOX_IMAGE)}

[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = {quoted(paths.registry_hosts)}

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"""


# Every registry resolves to a closed loopback port: a pull fails at once, and nothing leaves
# the machine. `_default` is the configuration of every registry without one of its own.
REFUSE_EVERY_PULL = 'server = "http://127.0.0.1:1"\n'


def cni_config(paths: NodePaths) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "mtls-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                # The bridge and its addresses are made before the API server starts (it
                # listens on one of them); the plugin must neither readdress it nor turn on
                # forwarding, which a gateway bridge would.
                "isGateway": False,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0", "gw": NODE_IP}],
                    "dataDir": str(paths.root / "cni" / "ipam"),
                },
            }
        ],
    }


def kubelet_config(
    paths: NodePaths, pki: Path, port: int, healthz_port: int, sync_frequency: str
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "client-ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # This kind of machine runs cgroup v1 (with a v2 `unified` mount beside it).
        "failCgroupV1": False,
        "failSwapOn": False,
        # How often mounted Secrets and ConfigMaps are refreshed (x 1 to 1.5).
        "syncFrequency": sync_frequency,
        "podLogsDir": str(paths.root / "pod-logs"),
        "clusterDomain": "cluster.local",
        # The disk is shared with everything else on the machine: no evictions or image
        # garbage collection because of what other programs wrote.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        # What the kubelet does with pod certificates (requests, refreshes) is logged only at
        # verbosity 4: that much, for that file alone.
        "logging": {"vmodule": [{"filePattern": "podcertificatemanager", "verbosity": 4}]},
    }


def write_config(paths: NodePaths, spec: NodeSpec, pki: Path, port: int, healthz_port: int) -> None:
    """Every file containerd and the kubelet read, except the kubelet's kubeconfig."""
    for directory in (paths.root, paths.cni_conf_dir, paths.registry_hosts / "_default"):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.containerd_config.write_text(containerd_config(paths, spec.bin_dir))
    (paths.registry_hosts / "_default" / "hosts.toml").write_text(REFUSE_EVERY_PULL)
    (paths.cni_conf_dir / "10-mtls-pods.conflist").write_text(
        json.dumps(cni_config(paths), indent=2) + "\n"
    )
    # JSON is YAML: the kubelet reads it as its configuration file.
    config = kubelet_config(paths, pki, port, healthz_port, spec.sync_frequency)
    paths.kubelet_config.write_text(json.dumps(config, indent=2) + "\n")


def containerd_argv(paths: NodePaths, spec: NodeSpec) -> list[str]:
    return [str(spec.bin_dir / "containerd"), "--config", str(paths.containerd_config)]


def kubelet_argv(paths: NodePaths, kubelet: Path) -> list[str]:
    return [
        str(kubelet),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubelet_kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--hostname-override={NODE_NAME}",
        # Not a loopback address (the kubelet refuses one): the bridge's own.
        f"--node-ip={NODE_IP}",
    ]


def runtime_env(spec: NodeSpec) -> dict[str, str]:
    """containerd finds its shim, and the shim runc, on the PATH."""
    return {"PATH": f"{spec.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def runtime_answers(paths: NodePaths, spec: NodeSpec) -> bool:
    if not paths.containerd_socket.exists():
        return False
    version = subprocess.run(
        [str(spec.bin_dir / "ctr"), "--address", str(paths.containerd_socket), "version"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return version.returncode == 0


def import_images(paths: NodePaths, spec: NodeSpec) -> None:
    images.load(spec.bin_dir / "ctr", paths.containerd_socket, spec.images)


# --- the host ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostClaim:
    """What a node took of the host, written before it takes anything."""

    state_dir: Path
    bin_dir: Path
    # Fixed paths that did not exist before: the node removes them when it ends.
    created: tuple[Path, ...]
    # The process that took the host: while it runs, its node may still be starting.
    pid: int = 0

    def save(self) -> None:
        body = {
            "state_dir": str(self.state_dir),
            "bin_dir": str(self.bin_dir),
            "created": [str(path) for path in self.created],
            "pid": self.pid,
        }
        HOST_CLAIM.write_text(json.dumps(body, indent=2) + "\n")

    @classmethod
    def load(cls) -> HostClaim | None:
        try:
            body = json.loads(HOST_CLAIM.read_text())
            return cls(
                Path(body["state_dir"]),
                Path(body["bin_dir"]),
                tuple(Path(path) for path in body["created"]),
                int(body.get("pid", 0)),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise NodeError(f"{HOST_CLAIM} is unreadable ({error}): remove it") from error

    def claimant_runs(self) -> bool:
        """Whether another process that took the host still runs: its node
        may be starting, before anything shows it is healthy."""
        if self.pid in (0, os.getpid()):
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


def claim_host(state_dir: Path, bin_dir: Path, running: bool) -> HostClaim:
    """Take the host for a node in `state_dir`; give back first what a dead node left.

    `running` says whether the node named by an existing claim is still alive: then the
    host is taken, and this is refused with the way to stop that node.
    """
    if os.geteuid() != 0:
        raise NodeError("a node needs root: its kubelet mounts volumes and makes cgroups")
    existing = HostClaim.load()
    if existing is not None and existing.state_dir != state_dir and running:
        raise NodeError(
            f"a node of {existing.state_dir} runs on this machine (one node per machine): "
            f"stop it with `python hack/localcluster.py down --dir {existing.state_dir}`"
        )
    clean_host()
    created = tuple(path for path in FIXED_PATHS if not path.exists())
    claim = HostClaim(state_dir, bin_dir, created, os.getpid())
    claim.save()
    _make_bridge()
    return claim


def _make_bridge() -> None:
    _run("ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge")
    prefix = POD_SUBNET.partition("/")[2]
    _run("ip", "address", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE)
    _run("ip", "address", "add", f"{API_SERVICE_IP}/32", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def clean_host() -> None:
    """Give back everything the node named in the host claim took; nothing if there is none.

    Safe to run twice, and after a node whose processes were killed: it finds what is left by
    where it lives (the node's state directory and binaries, the kubepods cgroups, the
    bridge), not by what a live process remembers.
    """
    claim = HostClaim.load()
    if claim is None:
        return
    paths = NodePaths.of(claim.state_dir)
    _kill_binaries(claim.bin_dir)
    _kill_cgroups()
    _unmount_under(claim.state_dir)
    _unmount_under(Path("/run/containerd"))
    _remove_cgroups()
    _run("ip", "link", "delete", BRIDGE, check=False)
    _remove_log_links(claim.state_dir)
    for path in claim.created:
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(paths.root, ignore_errors=True)
    HOST_CLAIM.unlink(missing_ok=True)


def _processes() -> Iterator[tuple[int, str]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            yield int(entry.name), os.readlink(entry / "exe")


def _kill_binaries(bin_dir: Path) -> None:
    """SIGKILL every process run from the node's binaries (the shims among them) or the
    control plane's kubelet, whichever state directory it served."""
    prefixes = (str(bin_dir) + "/",)
    for _ in range(3):
        found = [
            pid for pid, exe in _processes() if exe.startswith(prefixes) or exe.endswith("/kubelet")
        ]
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _kubepods() -> list[Path]:
    """Every cgroup the kubelet made, in every hierarchy, the deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / "kubepods"
        if top.is_dir():
            found += [Path(root) for root, _, _ in os.walk(top)]
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def _kill_cgroups() -> None:
    """SIGKILL every process in the pods' cgroups (containers outlive their shims)."""
    for _ in range(10):
        pids = set()
        for group in _kubepods():
            with contextlib.suppress(OSError):
                pids |= {int(line) for line in (group / "cgroup.procs").read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _remove_cgroups() -> None:
    for _ in range(10):
        left = _kubepods()
        for group in left:
            with contextlib.suppress(OSError):
                group.rmdir()
        if not _kubepods():
            return
        time.sleep(0.2)
    raise NodeError(f"cgroups left after stopping the node: {', '.join(map(str, _kubepods()))}")


_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, the deepest first."""
    prefix = str(path).rstrip("/") + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(path) or point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda mount: len(mount.parts), reverse=True)


def _unmount_under(path: Path) -> None:
    for _ in range(5):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            _libc.umount2(str(point).encode(), _MNT_DETACH)
    left = mounts_under(path)
    if left:
        raise NodeError(f"mounts left after stopping the node: {', '.join(map(str, left))}")


def _remove_log_links(state_dir: Path) -> None:
    """The kubelet links each container's log into /var/log/containers, a fixed path."""
    links = Path("/var/log/containers")
    if not links.is_dir():
        return
    for link in links.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(state_dir)):
                link.unlink()


def leftovers() -> list[str]:
    """What of a node is still on the host: empty when everything was given back."""
    found = [f"process {pid} ({exe})" for pid, exe in _processes() if _is_node_binary(exe)]
    found += [f"cgroup {group}" for group in _kubepods()]
    found += [f"mount {point}" for point in mounts_under(Path("/run/containerd"))]
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"network interface {BRIDGE}")
    if HOST_CLAIM.exists():
        found.append(f"host claim {HOST_CLAIM}")
    return found


def _is_node_binary(exe: str) -> bool:
    name = exe.rpartition("/")[2]
    return name in {"kubelet", "containerd", "containerd-shim-runc-v2", "runc", "pause"}
