"""nginx on the node, a server that reads its certificate only at start-up, serving HTTPS
with `ssl_verify_client on` from the Secret of an MtlsCertificate, and a caller pod that
calls every Ready nginx pod over mTLS (tests/node/nginx_caller.py) and logs each request:
the objects, and what the tests read of them."""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RELOAD_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
)

from localcluster import Kubectl
from node.operator_pods import get_json
from node.sleeper import sleeper_pod
from support.cluster import wait_for

HERE = Path(__file__).resolve().parent
CALLER = "caller"
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
# Where a pod that checks the CRL mounts the ConfigMap mtls-ca-bundle (ca.crt, ca.crl).
BUNDLE_DIR = "/etc/bundle"


def nginx_deployment(
    namespace: str, name: str, *, follows: bool, bundle: bool = False
) -> dict[str, Any]:
    """Two nginx pods serving the Secret `<name>-tls`, replaced one at a time, each Ready
    (its readiness probe) before an old one goes; with `bundle`, the trust bundle
    ConfigMap mounted at BUNDLE_DIR too."""
    mounts = {"tls": "/etc/tls", "conf": CONF_DIR}
    volumes: list[dict[str, Any]] = [
        {"name": "tls", "secret": {"secretName": f"{name}-tls", "defaultMode": 0o400}},
        {"name": "conf", "configMap": {"name": "nginx-conf"}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "var-lib-nginx", "emptyDir": {}},
    ]
    if bundle:
        mounts["bundle"] = BUNDLE_DIR
        volumes.append({"name": "bundle", "configMap": {"name": "mtls-ca-bundle"}})
    pod = sleeper_pod(namespace, name, mounts, volumes)
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
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
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


def service(namespace: str, name: str) -> dict[str, Any]:
    """Only its EndpointSlices are used: the node has no kube-proxy."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {NAME_LABEL: name},
            "ports": [{"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"}],
        },
    }


def caller_objects(namespace: str, servers: Sequence[str]) -> list[dict[str, Any]]:
    """The caller pod, calling `servers`, with a ServiceAccount that may list the
    EndpointSlices."""
    pod = sleeper_pod(
        namespace,
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
            {"name": "SERVICES", "value": ",".join(servers)},
            {"name": "INTERVAL_SECONDS", "value": "0.3"},
        ],
    )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": CALLER, "namespace": namespace},
        "rules": [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": CALLER, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CALLER},
        "subjects": [{"kind": "ServiceAccount", "name": CALLER, "namespace": namespace}],
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": CALLER, "namespace": namespace},
    }
    return [account, role, binding, pod]


def caller_certificate(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": CALLER, "namespace": namespace},
        # A client's name; the operator adds the namespace as its Organization.
        "spec": {"secretName": f"{CALLER}-tls", "usage": "client", "commonName": CALLER, **spec},
    }


@dataclass(frozen=True)
class Site:
    kubectl: Kubectl
    kubeconfig: Path
    namespace: str

    def log(self, event: str) -> list[dict[str, Any]]:
        """The caller's log lines of one kind, oldest first."""
        out = self.kubectl("logs", "-n", self.namespace, CALLER).stdout
        lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [line for line in lines if line["event"] == event]

    def requests(self, server: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [r for r in self.log("request") if r["service"] == server and r["time"] >= since]

    def serial(self, name: str) -> int:
        status = get_json(self.kubectl, "mtlscertificate", name, "-n", self.namespace)["status"]
        return int(status["serialNumber"], 16)

    def pods(self, name: str) -> list[dict[str, Any]]:
        found = get_json(self.kubectl, "pods", "-n", self.namespace, "-l", f"{NAME_LABEL}={name}")
        return [pod for pod in found["items"] if not pod["metadata"].get("deletionTimestamp")]

    def deployment(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = get_json(self.kubectl, "deployment", name, "-n", self.namespace)
        return body

    def recorded(self, name: str) -> bool:
        """Whether the operator recorded what the Deployment's pods run."""
        annotations = self.deployment(name)["metadata"].get("annotations") or {}
        return MOUNTED_DIGEST_ANNOTATION in annotations

    def replica_sets(self, name: str) -> list[dict[str, Any]]:
        found = get_json(
            self.kubectl, "replicasets", "-n", self.namespace, "-l", f"{NAME_LABEL}={name}"
        )
        return list(found["items"])

    def rolled_events(self, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.kind=Deployment,involvedObject.name={name}"
        found = get_json(self.kubectl, "events", "-n", self.namespace, "--field-selector", selector)
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
            self.namespace,
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
        shown = self.kubectl("exec", "-n", self.namespace, pod, "--", *command).stdout
        return int(shown.strip().removeprefix("serial="), 16)


class Watch:
    """`kubectl get --watch` of one object in the background: every version of it the API
    server sends, with the time it arrived. A write is timed to the watch's delivery, a
    fraction of a second, rather than to the API's timestamps, which have whole seconds."""

    def __init__(self, kubectl: Kubectl, namespace: str, kind: str, name: str) -> None:
        argv = [str(kubectl.binary), "--kubeconfig", str(kubectl.kubeconfig), "get", kind, name]
        argv += ["-n", namespace, "--watch", "-o", "json"]
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


def make_namespace(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "namespace", namespace)
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")


def open_site(
    kubectl: Kubectl,
    kubeconfig: Path,
    namespace: str,
    *,
    followers: Sequence[str],
    others: Sequence[str],
    caller_certificate: dict[str, Any],
    nginx_conf: str | None = None,
    bundle: bool = False,
) -> Site:
    """nginx Deployments serving the Secrets `<name>-tls` (issued before: a workload
    recorded before its Secret existed would be rolled once when the Secret appears,
    docs/workloads.md), the followers asking to be rolled; a Service each, and the caller
    with its certificate. `nginx_conf`: the servers' configuration (default: nginx.conf
    here); `bundle`: they mount the trust bundle ConfigMap (nginx_deployment). Returns
    once every nginx pod answered the caller and the operator recorded each follower."""
    kubectl("apply", "-f", "-", input=json.dumps(caller_certificate))
    kubectl("wait", "-n", namespace, "--for=condition=Ready", f"mtlscertificate/{CALLER}")
    conf = nginx_conf if nginx_conf is not None else (HERE / "nginx.conf").read_text()
    for configmap, key, text in [
        ("nginx-conf", "nginx.conf", conf),
        (CALLER, "caller.py", (HERE / "nginx_caller.py").read_text()),
    ]:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {key: text}}
        body["metadata"] = {"name": configmap, "namespace": namespace}
        kubectl("apply", "-f", "-", input=json.dumps(body))
    servers = [*followers, *others]
    objects = [
        *(
            nginx_deployment(namespace, name, follows=name in followers, bundle=bundle)
            for name in servers
        ),
        *(service(namespace, name) for name in servers),
        *caller_objects(namespace, servers),
    ]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    site = Site(kubectl, kubeconfig, namespace)
    for name in servers:
        site.rolled_out(name)
    kubectl(
        "wait",
        "-n",
        namespace,
        f"pod/{CALLER}",
        "--for=condition=Ready",
        "--timeout=120s",
        timeout=130,
    )
    # Seen for the first time, a follower is recorded, not rolled; a renewal before that
    # would be recorded too, and never reach its pods.
    for name in followers:
        wait_for(
            functools.partial(site.recorded, name),
            timeout=60,
            interval=1,
            what=f"{name} recorded by the operator",
        )
    for name in servers:
        wait_for(
            functools.partial(site.answered_by_each, name),
            timeout=60,
            interval=1,
            what=f"the caller answered by both {name} pods",
        )
    return site


def leaf_serial(secret: dict[str, Any]) -> int:
    pem = base64.b64decode(secret["data"]["tls.crt"])
    return x509.load_pem_x509_certificates(pem)[0].serial_number


def restarted_for(deployment: dict[str, Any]) -> str | None:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    value = annotations.get(RESTARTED_FOR_ANNOTATION)
    return str(value) if value is not None else None
