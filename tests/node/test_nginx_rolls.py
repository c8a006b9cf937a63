"""nginx on the node, a server that reads its certificate only at start-up, serving HTTPS
with `ssl_verify_client on` from the Secret of an MtlsCertificate. A caller pod calls every
Ready nginx pod over mTLS (tests/node/nginx_caller.py) and logs each request.

- `web` asks to be rolled (`mtls.dev/reload: "true"`). After `kubectl mtls renew`, its pods
  are replaced once, the new pods serve the new serial, and no request fails: the
  Deployment keeps its pods until new ones are Ready (maxUnavailable 0), and a pod being
  replaced keeps serving for a few seconds after it stops being a Ready endpoint (preStop),
  long enough for its callers to stop calling it.
- `static` does not ask. After its renewal nothing restarts: the kubelet rewrites the files
  in its pods, and nginx goes on serving the old certificate until something restarts it.

The times from the Secret's write to the roll and to the first request answered with the
new certificate are printed."""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RELOAD_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
)

from e2e.plugin import kubectl_mtls
from localcluster import Kubectl, LocalCluster
from node.operator_pods import get_json, is_ready, issue, restart_counts
from node.sleeper import sleeper_pod
from node.test_workloads_in_pods import PROPAGATION_SECONDS
from support.cluster import wait_for

HERE = Path(__file__).resolve().parent
NAMESPACE = "nginx"
FOLLOWER, STATIC, CALLER = "web", "static", "caller"
SERVERS = (FOLLOWER, STATIC)
NAME_LABEL = "app.kubernetes.io/name"
# The operator's --workload-roll-window (its default), and a margin for a busy machine: a
# second roll, were there one, would come within it.
WINDOW = 5.0
SETTLE = WINDOW + 10.0
# The pods' user; with fsGroup, the Secret's files (0400) become group-readable (0440).
UID = 65532
# How long a pod being deleted goes on serving: longer than the caller takes to read the
# EndpointSlice in which it is no longer ready (a round of calls, well under a second here).
PRE_STOP_SECONDS = 5
CONF_DIR = "/etc/nginx-mtls"
NGINX = ["/usr/sbin/nginx", "-e", "stderr", "-c", f"{CONF_DIR}/nginx.conf", "-g", "daemon off;"]


def nginx_deployment(name: str, *, follows: bool) -> dict[str, Any]:
    """Two nginx pods serving the Secret `<name>-tls`, replaced one at a time, each Ready
    (its readiness probe) before an old one goes."""
    pod = sleeper_pod(
        NAMESPACE,
        name,
        {"tls": "/etc/tls", "conf": CONF_DIR},
        [
            {"name": "tls", "secret": {"secretName": f"{name}-tls", "defaultMode": 0o400}},
            {"name": "conf", "configMap": {"name": "nginx-conf"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "var-lib-nginx", "emptyDir": {}},
        ],
    )
    spec = pod["spec"]
    spec["securityContext"]["fsGroup"] = UID
    [container] = spec["containers"]
    container["volumeMounts"] += [
        {"name": "tmp", "mountPath": "/tmp"},
        # Debian's nginx makes its temporary directories there, whatever the configuration.
        {"name": "var-lib-nginx", "mountPath": "/var/lib/nginx"},
    ]
    container.update(
        name="nginx",
        command=NGINX,
        ports=[
            {"name": "https", "containerPort": 8443, "protocol": "TCP"},
            {"name": "health", "containerPort": 8080, "protocol": "TCP"},
        ],
        readinessProbe={"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 2},
        # Once a pod's deletion begins, its Service's clients (kube-proxy; here the caller,
        # reading the EndpointSlices every round) stop routing to it a moment later, while
        # the kubelet stops it at the same time. Without this hook nginx gets SIGTERM (its
        # fast shutdown, which closes the listener) as soon as the kubelet sees the deletion,
        # and a request routed on a list read just before is refused: a race between the
        # two. With it, nginx serves on for PRE_STOP_SECONDS after it stops being Ready.
        lifecycle={"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
    )
    labels = {NAME_LABEL: name}
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "labels": labels}
    if follows:
        metadata["annotations"] = {RELOAD_ANNOTATION: "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def service(name: str) -> dict[str, Any]:
    """Only its EndpointSlices are used: the node has no kube-proxy."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {NAME_LABEL: name},
            "ports": [{"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def caller_objects() -> list[dict[str, Any]]:
    """The caller pod, with a ServiceAccount that may list the EndpointSlices."""
    pod = sleeper_pod(
        NAMESPACE,
        CALLER,
        {"tls": "/etc/tls", "app": "/app"},
        [
            {"name": "tls", "secret": {"secretName": f"{CALLER}-tls", "defaultMode": 0o400}},
            {"name": "app", "configMap": {"name": CALLER}},
        ],
    )
    spec = pod["spec"]
    spec.update(automountServiceAccountToken=True, serviceAccountName=CALLER)
    spec["securityContext"]["fsGroup"] = UID
    [container] = spec["containers"]
    container.update(
        command=["python3", "/app/caller.py"],
        env=[
            {"name": "SERVICES", "value": ",".join(SERVERS)},
            {"name": "INTERVAL_SECONDS", "value": "0.3"},
        ],
    )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": CALLER, "namespace": NAMESPACE},
        "rules": [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": CALLER, "namespace": NAMESPACE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CALLER},
        "subjects": [{"kind": "ServiceAccount", "name": CALLER, "namespace": NAMESPACE}],
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": CALLER, "namespace": NAMESPACE},
    }
    return [account, role, binding, pod]


CALLER_CERTIFICATE = {
    "apiVersion": "mtls.dev/v1alpha1",
    "kind": "MtlsCertificate",
    "metadata": {"name": CALLER, "namespace": NAMESPACE},
    # A client's name; the operator adds the namespace as its Organization.
    "spec": {"secretName": f"{CALLER}-tls", "usage": "client", "commonName": CALLER},
}


@dataclass(frozen=True)
class Site:
    kubectl: Kubectl
    kubeconfig: Path

    def log(self, event: str) -> list[dict[str, Any]]:
        """The caller's log lines of one kind, oldest first."""
        out = self.kubectl("logs", "-n", NAMESPACE, CALLER).stdout
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [line for line in lines if line["event"] == event]

    def requests(self, server: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [r for r in self.log("request") if r["service"] == server and r["time"] >= since]

    def serial(self, name: str) -> int:
        status = get_json(self.kubectl, "mtlscertificate", name, "-n", NAMESPACE)["status"]
        return int(status["serialNumber"], 16)

    def pods(self, name: str) -> list[dict[str, Any]]:
        found = get_json(self.kubectl, "pods", "-n", NAMESPACE, "-l", f"{NAME_LABEL}={name}")
        return [pod for pod in found["items"] if not pod["metadata"].get("deletionTimestamp")]

    def deployment(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = get_json(self.kubectl, "deployment", name, "-n", NAMESPACE)
        return body

    def replica_sets(self, name: str) -> list[dict[str, Any]]:
        found = get_json(self.kubectl, "replicasets", "-n", NAMESPACE, "-l", f"{NAME_LABEL}={name}")
        return list(found["items"])

    def rolled_events(self, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=Deployment,involvedObject.name={name}"
        found = get_json(self.kubectl, "events", "-n", NAMESPACE, "--field-selector", selector)
        return [e for e in found["items"] if e["reason"] == "CertificateRolled"]

    def answered_by_each(self, server: str, since: float = 0.0, at_least: int = 1) -> bool:
        """Whether each of the server's live pods answered `at_least` requests since then."""
        answered: dict[str, int] = {}
        for request in self.requests(server, since):
            if request["ok"]:
                answered[request["pod"]] = answered.get(request["pod"], 0) + 1
        pods = [pod["metadata"]["name"] for pod in self.pods(server)]
        return len(pods) == 2 and all(answered.get(pod, 0) >= at_least for pod in pods)

    def rolled_out(self, name: str) -> None:
        """Wait for the Deployment's rollout to end, as `kubectl rollout status` judges it."""
        self.kubectl(
            "rollout",
            "status",
            "-n",
            NAMESPACE,
            f"deployment/{name}",
            "--timeout=180s",
            timeout=200,
        )

    def rolled_out_and_answering(self, name: str) -> float:
        """Wait for the rollout to end and each new pod to answer; when the rollout ended."""
        self.rolled_out(name)
        ended = time.time()
        wait_for(
            lambda: self.answered_by_each(name, since=ended),
            timeout=30,
            interval=1,
            what=f"both new {name} pods answering",
        )
        return ended

    def mounted_serial(self, pod: str) -> int:
        """The serial of the certificate file the pod sees now."""
        command = ["openssl", "x509", "-noout", "-serial", "-in", "/etc/tls/tls.crt"]
        shown = self.kubectl("exec", "-n", NAMESPACE, pod, "--", *command).stdout
        return int(shown.strip().removeprefix("serial="), 16)


class Watch:
    """`kubectl get --watch` of one object in the background: every version of it the API
    server sends, with the time it arrived. A write is timed to the watch's delivery, a
    fraction of a second, rather than to the API's timestamps, which have whole seconds."""

    def __init__(self, kubectl: Kubectl, kind: str, name: str) -> None:
        argv = [str(kubectl.binary), "--kubeconfig", str(kubectl.kubeconfig), "get", kind, name]
        argv += ["-n", NAMESPACE, "--watch", "-o", "json"]
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Watch:
        self._reader.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._process.terminate()
        self._reader.join(10)
        self._process.wait(10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _read(self) -> None:
        assert self._process.stdout is not None
        lines: list[str] = []
        for line in self._process.stdout:
            lines.append(line)
            if line.rstrip("\n") == "}":  # kubectl prints each version as indented JSON
                self.seen.append((time.time(), json.loads("".join(lines))))
                lines = []

    def first(
        self, matches: Callable[[dict[str, Any]], bool]
    ) -> tuple[float, dict[str, Any]] | None:
        return next(((at, body) for at, body in list(self.seen) if matches(body)), None)


def leaf_serial(secret: dict[str, Any]) -> int:
    pem = base64.b64decode(secret["data"]["tls.crt"])
    return x509.load_pem_x509_certificates(pem)[0].serial_number


def restarted_for(deployment: dict[str, Any]) -> str | None:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    value = annotations.get(RESTARTED_FOR_ANNOTATION)
    return str(value) if value is not None else None


def renew(
    site: Site, name: str, old: int, secret: Watch, home: Path
) -> tuple[float, dict[str, Any]]:
    """`kubectl mtls renew` of `name`; when its Secret was seen holding a new certificate,
    and that version of it."""
    renewed = kubectl_mtls(
        site.kubectl, home, "renew", name, "-n", NAMESPACE, kubeconfig=site.kubeconfig
    )
    assert renewed.returncode == 0, renewed.stderr
    return wait_for(
        lambda: secret.first(lambda body: leaf_serial(body) != old),
        timeout=60,
        what="the Secret written with a new certificate",
    )


@pytest.fixture(scope="module")
def site(
    node_cluster: LocalCluster,
    node_kubectl: Kubectl,
    operator_installed: float,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    kubectl = node_kubectl
    kubectl("create", "namespace", NAMESPACE)
    kubectl("label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted")
    issued = tmp_path_factory.mktemp("nginx-certificates")
    for name in SERVERS:
        issue(kubectl, NAMESPACE, name, issued)
    kubectl("apply", "-f", "-", input=json.dumps(CALLER_CERTIFICATE))
    kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", f"mtlscertificate/{CALLER}")
    for configmap, key, source in [
        ("nginx-conf", "nginx.conf", HERE / "nginx.conf"),
        (CALLER, "caller.py", HERE / "nginx_caller.py"),
    ]:
        kubectl("create", "configmap", configmap, "-n", NAMESPACE, f"--from-file={key}={source}")
    # The certificates first: a workload recorded before its Secret existed would be rolled
    # once when the Secret appears (docs/workloads.md).
    objects = [
        nginx_deployment(FOLLOWER, follows=True),
        nginx_deployment(STATIC, follows=False),
        *(service(name) for name in SERVERS),
        *caller_objects(),
    ]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    running = Site(kubectl, node_cluster.kubeconfig)
    for name in SERVERS:
        running.rolled_out(name)
    kubectl(
        "wait",
        "-n",
        NAMESPACE,
        f"pod/{CALLER}",
        "--for=condition=Ready",
        "--timeout=120s",
        timeout=130,
    )
    # Seen for the first time, web is recorded, not rolled; a renewal before that would be
    # recorded too, and never reach its pods.
    wait_for(
        lambda: (
            MOUNTED_DIGEST_ANNOTATION
            in running.deployment(FOLLOWER)["metadata"].get("annotations", {})
        ),
        timeout=60,
        interval=1,
        what="web recorded by the operator",
    )
    for name in SERVERS:
        wait_for(
            functools.partial(running.answered_by_each, name),
            timeout=60,
            interval=1,
            what=f"the caller answered by both {name} pods",
        )
    yield running
    # The caller would go on calling through the package's other tests.
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=180)


def test_a_renewal_rolls_nginx_once_and_fails_no_request(site: Site, tmp_path: Path) -> None:
    old = site.serial(FOLLOWER)
    before = site.deployment(FOLLOWER)
    old_pods = {pod["metadata"]["name"] for pod in site.pods(FOLLOWER)}
    assert len(site.replica_sets(FOLLOWER)) == 1
    with (
        Watch(site.kubectl, "secret", f"{FOLLOWER}-tls") as secret,
        Watch(site.kubectl, "deployment", FOLLOWER) as deployment,
    ):
        # Both watches deliver the current version first: they are watching from now on.
        wait_for(lambda: secret.seen and deployment.seen, timeout=30, what="the watches")
        written, body = renew(site, FOLLOWER, old, secret, tmp_path)
        new = leaf_serial(body)
        rolled, _ = wait_for(
            lambda: deployment.first(lambda body: restarted_for(body) != restarted_for(before)),
            timeout=60,
            what="web rolled",
        )
        rolled_out = site.rolled_out_and_answering(FOLLOWER)
        time.sleep(SETTLE)
        versions = [body for _, body in deployment.seen]

    after = site.deployment(FOLLOWER)
    digests = {restarted_for(body) for body in versions} - {restarted_for(before)}
    assert len(digests) == 1, f"the pod template changed more than once: {digests}"
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert restarted_for(after) == after["metadata"]["annotations"][MOUNTED_DIGEST_ANNOTATION]
    replica_sets = site.replica_sets(FOLLOWER)
    assert len(replica_sets) == 2, "one new ReplicaSet"
    [current] = [rs for rs in replica_sets if rs["spec"]["replicas"] > 0]
    pods = site.pods(FOLLOWER)
    new_pods = {pod["metadata"]["name"] for pod in pods}
    assert len(new_pods) == 2
    assert not new_pods & old_pods
    assert all(is_ready(pod) for pod in pods)
    assert set(restart_counts(pods).values()) == {0}
    current_hash = current["metadata"]["labels"]["pod-template-hash"]
    assert {pod["metadata"]["labels"]["pod-template-hash"] for pod in pods} == {current_hash}
    assert len(site.rolled_events(FOLLOWER)) == 1

    requests = site.requests(FOLLOWER)
    failed = [request for request in requests if not request["ok"]]
    assert not failed, failed[:5]
    served = {(request["pod"], int(request["serial"], 16)) for request in requests}
    assert {serial for pod, serial in served if pod in old_pods} == {old}
    assert {serial for pod, serial in served if pod in new_pods} == {new}
    during = [request for request in requests if written <= request["time"] <= rolled_out]
    assert len(during) >= 10, "the caller kept calling through the roll"
    # The caller routes only to Ready endpoints: with none, it would call nobody and see no
    # failure. From the moment it saw both pods, web always had one.
    lists = [line["endpoints"][FOLLOWER] for line in site.log("endpoints")]
    both = next(index for index, addresses in enumerate(lists) if len(addresses) == 2)
    assert all(lists[both:]), lists
    first_new = min(request["time"] for request in requests if request["pod"] in new_pods)
    print(
        f"\nnginx (web) rolled {rolled - written:.1f} s after the Secret was written; first "
        f"request answered with the new serial {first_new - written:.1f} s after the write, "
        f"rollout done {rolled_out - written:.1f} s after; requests to web {len(requests)} "
        f"({len(during)} during the roll), failed {len(failed)}"
    )


def test_without_the_annotation_nginx_keeps_the_old_certificate(site: Site, tmp_path: Path) -> None:
    old = site.serial(STATIC)
    before = site.deployment(STATIC)
    pods_before = site.pods(STATIC)
    names = [pod["metadata"]["name"] for pod in pods_before]
    with Watch(site.kubectl, "secret", f"{STATIC}-tls") as secret:
        wait_for(lambda: secret.seen, timeout=30, what="the watch")
        written, body = renew(site, STATIC, old, secret, tmp_path)
    new = leaf_serial(body)
    # The kubelet rewrites the files in the running pods (at its next sync of each pod).
    wait_for(
        lambda: all(site.mounted_serial(pod) == new for pod in names),
        timeout=PROPAGATION_SECONDS,
        interval=2,
        what="the new certificate in the static pods' files",
    )
    refreshed = time.time()
    # Long enough that nginx would have used the new files if it read them again.
    wait_for(
        lambda: site.answered_by_each(STATIC, since=refreshed, at_least=10),
        timeout=60,
        interval=1,
        what="calls to static after its files changed",
    )

    requests = site.requests(STATIC, since=written)
    assert requests
    assert all(request["ok"] for request in requests), [r for r in requests if not r["ok"]][:5]
    assert {int(request["serial"], 16) for request in requests} == {old}
    assert [pod["metadata"]["name"] for pod in site.pods(STATIC)] == names
    assert restart_counts(site.pods(STATIC)) == restart_counts(pods_before)
    after = site.deployment(STATIC)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert restarted_for(after) is None
    assert MOUNTED_DIGEST_ANNOTATION not in (after["metadata"].get("annotations") or {})
    assert len(site.replica_sets(STATIC)) == 1
    assert site.rolled_events(STATIC) == []
    after_refresh = [request for request in requests if request["time"] >= refreshed]
    print(
        f"\nnginx (static) not rolled: the kubelet rewrote its files {refreshed - written:.0f} s "
        f"after the Secret's write; {len(after_refresh)} requests after that, every one "
        "answered with the old serial"
    )

    # Restarted, the same nginx serves the new certificate: what a roll gives `web`.
    site.kubectl("rollout", "restart", "-n", NAMESPACE, f"deployment/{STATIC}")
    restarted = site.rolled_out_and_answering(STATIC)
    answered = {int(r["serial"], 16) for r in site.requests(STATIC, since=restarted)}
    assert answered == {new}
    assert all(request["ok"] for request in site.requests(STATIC))
