"""`make demo`: the operator's main job, end to end.

Starts the local control plane (or uses $KUBECONFIG when it points at a
reachable cluster), installs the CRD, runs the operator, applies the
examples, waits for Ready, then proves the Secrets the recipe's way: their
keys written to files as a pod mount shows them, `openssl verify`, and an
`openssl s_server -Verify 1` / `s_client` handshake between them.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from mtls_operator.cli.recipe import write_private_file

from localcluster import Kubectl, LocalCluster, control_plane_bin_dir
from operator_process import OperatorProcess
from recipe_checks import mtls_handshake, openssl_verify

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
NAMESPACE = "demo"
OPERATOR_NAMESPACE = "mtls-operator"
METRICS_PORT = 18080
SERVER, CLIENT = "payments", "checkout"


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def reachable(kubectl: Kubectl) -> bool:
    return kubectl("get", "--raw", "/readyz", check=False).returncode == 0


def connect(bin_dir: Path) -> tuple[Kubectl, LocalCluster | None]:
    given = os.environ.get("KUBECONFIG")
    if given:
        kubectl = Kubectl(bin_dir / "kubectl", Path(given), cache_dir=DEMO / "kubectl-cache")
        if reachable(kubectl):
            say(f"using the cluster of KUBECONFIG={given}")
            return kubectl, None
        say(f"KUBECONFIG={given} is not reachable; starting a local control plane instead")
    say("starting a local control plane (etcd, kube-apiserver, kube-controller-manager)")
    cluster = LocalCluster.start(DEMO / "cluster", bin_dir)
    return Kubectl(
        bin_dir / "kubectl", cluster.kubeconfig, cache_dir=DEMO / "kubectl-cache"
    ), cluster


def start_operator(kubeconfig: Path) -> OperatorProcess:
    process = OperatorProcess(
        kubeconfig,
        DEMO / "operator.log",
        [
            "--namespace",
            NAMESPACE,
            "--bootstrap-ca",
            "--cluster-ca-secret",
            f"{OPERATOR_NAMESPACE}/mtls-operator-ca",
        ],
        metrics_port=METRICS_PORT,
    )
    process.start()
    return process


def mount_secret(kubectl: Kubectl, name: str) -> Path:
    """The Secret's keys as files, the way a pod's volume mount shows them."""
    secret = json.loads(kubectl("get", "secret", name, "-n", NAMESPACE, "-o", "json").stdout)
    directory = DEMO / "mounts" / name
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in secret["data"].items():
        write_private_file(directory / key, base64.b64decode(value))
    return directory


def summary(kubectl: Kubectl, mounts: dict[str, Path], handshake_ok: bool) -> bool:
    certificates = json.loads(
        kubectl("get", "mtlscertificates", "-n", NAMESPACE, "-o", "json").stdout
    )
    rows = [("certificate", "secret", "usage", "ready", "expires", "openssl verify")]
    all_ok = handshake_ok
    for item in certificates["items"]:
        name, spec, status = item["metadata"]["name"], item["spec"], item.get("status", {})
        ready = next(
            (c["status"] for c in status.get("conditions", []) if c["type"] == "Ready"), "?"
        )
        directory = mounts.get(spec["secretName"])
        verified = (
            directory is not None
            and openssl_verify(directory / "ca.crt", directory / "tls.crt").returncode == 0
        )
        all_ok = all_ok and verified and ready == "True"
        rows.append(
            (
                name,
                spec["secretName"],
                spec["usage"],
                ready,
                status.get("notAfter", "-"),
                "OK" if verified else "FAILED",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        f"\nmTLS handshake {SERVER} (s_server -Verify 1) <- {CLIENT} (s_client): "
        f"{'OK' if handshake_ok else 'FAILED'}"
    )
    print(
        f"Secrets mounted as files in {DEMO.relative_to(ROOT) / 'mounts'}; operator log in "
        f"{DEMO.relative_to(ROOT) / 'operator.log'}; metrics on http://127.0.0.1:{METRICS_PORT}/metrics"
    )
    return all_ok


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    bin_dir = control_plane_bin_dir()
    cluster: LocalCluster | None = None
    operator: OperatorProcess | None = None

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        kubectl, cluster = connect(bin_dir)
        say("installing the CRDs (MtlsCertificate, MtlsPolicy)")
        kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "crds"))
        for crd in ("mtlscertificates.mtls.dev", "mtlspolicies.mtls.dev"):
            kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
            kubectl("create", "namespace", namespace, check=False)
        say("starting the operator (bootstraps the cluster CA)")
        operator = start_operator(kubectl.kubeconfig)
        say("applying examples/: a server and a client certificate")
        for example in ("server-certificate.yaml", "client-certificate.yaml"):
            kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / example))
        started = time.monotonic()
        kubectl(
            "wait",
            "-n",
            NAMESPACE,
            "--for=condition=Ready",
            "mtlscertificate",
            SERVER,
            CLIENT,
            "--timeout=60s",
        )
        say(f"both Ready in {time.monotonic() - started:.1f}s")
        mounts = {name: mount_secret(kubectl, name) for name in (f"{SERVER}-tls", f"{CLIENT}-tls")}
        server, client = mounts[f"{SERVER}-tls"], mounts[f"{CLIENT}-tls"]
        say("handshake: openssl s_server -Verify 1 (server Secret) and s_client (client Secret)")
        handshake = mtls_handshake(
            server_cert=server / "tls.crt",
            server_key=server / "tls.key",
            server_trusts=server / "ca.crt",
            client_cert=client / "tls.crt",
            client_key=client / "tls.key",
            client_trusts=client / "ca.crt",
            hostname=f"{SERVER}.{NAMESPACE}.svc",
        )
        ok = summary(kubectl, mounts, handshake.succeeded)
        if sys.stdin.isatty() and ok:
            print(
                "\nThe operator keeps running: try `kubectl -n demo delete secret payments-tls`."
                " Ctrl-C stops it."
            )
            if cluster is not None:
                print(f"export KUBECONFIG={cluster.kubeconfig}")
            while operator.running:
                time.sleep(1)
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 130
    finally:
        if operator is not None:
            operator.stop()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
