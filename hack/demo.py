"""`make demo`: the operator's main job, as a user sees it.

On a local cluster with a real node (hack/localcluster.py; the one of `make cluster-up` when
it runs, else one of its own in .demo/), it installs the operator from its image built from
the Dockerfile (`kubectl apply -k deploy/overlays/local`), applies the example application
(examples/: a server and a client certificate, and the payments and checkout Deployments
that mount them), and shows the operator's pods, the certificates, and checkout's calls to
payments over mTLS, each a handshake with the Secrets the operator wrote.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import images
from localcluster import REPO_ROOT, Kubectl, LocalCluster, control_plane_bin_dir
from localnode import NodeSpec

DEMO = REPO_ROOT / ".demo"
SHARED_CLUSTER = REPO_ROOT / ".cluster"
OPERATOR = REPO_ROOT / "deploy" / "overlays" / "local"
EXAMPLES = OPERATOR / "examples"
OPERATOR_NAMESPACE, NAMESPACE = "mtls-operator", "demo"
CERTIFICATES = ("payments", "checkout")
HANDSHAKES = 3
_T = TypeVar("_T")


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def wait(probe: Callable[[], _T | None], what: str, timeout: float = 180) -> _T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(1)
    raise SystemExit(f"demo: timed out after {timeout:.0f} s waiting for {what}")


def get(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def cluster_with_node(tarballs: list[Path]) -> tuple[LocalCluster, bool]:
    """The cluster of `make cluster-up` if it runs with a node (the images loaded into it),
    else a new one; and whether the demo started it."""
    shared = LocalCluster.attach(SHARED_CLUSTER)
    if shared is not None and shared.node is not None and shared.healthy():
        say(f"using the cluster of `make cluster-up` ({shared.server}); loading the images")
        images.load(shared.node_bin_dir / "ctr", shared.node_paths.containerd_socket, tarballs)
        return shared, False
    say("starting a cluster with a node: etcd, kube-apiserver, kube-controller-manager,")
    say("kube-scheduler, and a kubelet with containerd and runc on this machine")
    node = NodeSpec(images.node_bin_dir(), tuple(tarballs))
    cluster = LocalCluster.start(DEMO / "cluster", control_plane_bin_dir(), node=node)
    say(f"cluster ready in {cluster.startup_seconds:.1f} s")
    return cluster, True


def install_operator(kubectl: Kubectl) -> list[dict[str, Any]]:
    say("installing the operator: kubectl apply -k deploy/overlays/local")
    kubectl("apply", "--server-side", "-k", str(OPERATOR), timeout=120)
    kubectl(
        "rollout",
        "status",
        "-n",
        OPERATOR_NAMESPACE,
        "deployment/mtls-operator",
        "--timeout=180s",
        timeout=190,
    )
    pods: list[dict[str, Any]] = get(kubectl, "pods", "-n", OPERATOR_NAMESPACE)["items"]
    return pods


def run_examples(kubectl: Kubectl) -> list[dict[str, Any]]:
    """The example application, until checkout has made HANDSHAKES calls; checkout's log."""
    kubectl("create", "namespace", NAMESPACE, check=False)
    say("applying examples/: certificates for payments and checkout, and their Deployments")
    kubectl("apply", "--server-side", "-k", str(EXAMPLES))
    kubectl(
        "wait",
        "-n",
        NAMESPACE,
        "--for=condition=Ready",
        *(f"mtlscertificate/{name}" for name in CERTIFICATES),
        "--timeout=60s",
    )
    kubectl("rollout", "status", "-n", NAMESPACE, "deployment/payments", "--timeout=120s")
    # The local node has no cluster DNS: checkout dials a payments pod by its address and
    # still checks payments.demo.svc in its certificate.
    server = get(kubectl, "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=payments")
    address = server["items"][0]["status"]["podIP"]
    kubectl("set", "env", "-n", NAMESPACE, "deployment/checkout", f"PAYMENTS_CONNECT_TO={address}")
    kubectl("rollout", "status", "-n", NAMESPACE, "deployment/checkout", "--timeout=120s")

    def calls() -> list[dict[str, Any]] | None:
        clients = get(kubectl, "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=checkout")
        current = [pod for pod in clients["items"] if _dials(pod, address)]
        if not current:
            return None
        name = current[0]["metadata"]["name"]
        log = kubectl("logs", "-n", NAMESPACE, name, check=False).stdout
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        return lines if len(lines) >= HANDSHAKES else None

    return wait(calls, "checkout's calls to payments", timeout=60)


def _dials(pod: dict[str, Any], address: str) -> bool:
    """A checkout pod of the Deployment's latest revision, running."""
    [container] = pod["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    live = not pod["metadata"].get("deletionTimestamp")
    return (
        live and env.get("PAYMENTS_CONNECT_TO") == address and pod["status"]["phase"] == "Running"
    )


def summary(
    kubectl: Kubectl, operator_pods: list[dict[str, Any]], calls: list[dict[str, Any]]
) -> bool:
    print()
    for pod in operator_pods:
        [status] = pod["status"]["containerStatuses"]
        print(
            f"operator pod {pod['metadata']['name']}: {status['image']}, "
            f"ready={status['ready']}, uid {pod['spec']['securityContext']['runAsUser']}"
        )
    holder = get(kubectl, "lease", "mtls-operator", "-n", OPERATOR_NAMESPACE)["spec"]
    print(f"leader: {holder['holderIdentity']}\n")
    certificates = get(kubectl, "mtlscertificates", "-n", NAMESPACE)["items"]
    for item in certificates:
        status = item.get("status", {})
        print(
            f"certificate {item['metadata']['name']}: Secret {item['spec']['secretName']}, "
            f"{item['spec']['usage']}, serial {status.get('serialNumber', '-')}, "
            f"expires {status.get('notAfter', '-')}"
        )
    print()
    for call in calls:
        outcome = (
            f"OK: payments (serial {call['server_serial']}) answered {call['as']}"
            if call["ok"]
            else f"FAILED: {call['error']}"
        )
        print(f"checkout -> payments over mTLS: {outcome}")
    return all(call["ok"] for call in calls)


def main() -> int:
    DEMO.mkdir(exist_ok=True)

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    began = time.monotonic()
    cluster: LocalCluster | None = None
    started = False
    try:
        say("building the images (cached): the operator from its Dockerfile, the workloads")
        tarballs = images.built_tarballs()
        cluster, started = cluster_with_node(tarballs)
        kubectl = Kubectl(cluster.bin_dir / "kubectl", cluster.kubeconfig, DEMO / "kubectl-cache")
        operator_pods = install_operator(kubectl)
        calls = run_examples(kubectl)
        ok = summary(kubectl, operator_pods, calls)
        print(f"\ndemo {'passed' if ok else 'FAILED'} in {time.monotonic() - began:.0f} s")
        if sys.stdin.isatty() and ok and started:
            print(
                f"\nThe cluster keeps running: export KUBECONFIG={cluster.kubeconfig}; then "
                "`kubectl -n demo logs -f deployment/checkout`. Ctrl-C stops it."
            )
            while cluster.healthy():
                time.sleep(1)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 130
    finally:
        if cluster is not None and started:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
