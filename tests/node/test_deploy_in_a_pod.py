"""The operator installed as users install it, `kubectl apply -k deploy/overlays/local`, on a
real node: its image built from the Dockerfile, two replicas as pods, its ServiceAccount
token projected and refreshed by the kubelet, the node restarted under it.

The token test waits until the leader's token was refreshed and its first token is refused
(11 minutes after the install: the API's shortest token, and the minute past its expiry that
the API server still accepts it), so it runs after the package's other tests, which shorten
its wait.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from mtls_operator import __version__

from localcluster import Kubectl, LocalCluster
from node.operator_pods import (
    OPERATOR_NAMESPACE,
    get_json,
    issue,
    leader_pod,
    operator_pods,
    pod_get,
    restart_counts,
    seconds_to_ready,
    wait_operator_ready,
)
from node.sleeper import identity_pod
from support.cluster import wait_for
from support.scrape import value

NAMESPACE = "node-tenant"
# docs/high-availability.md: a Lease of 15 s; a pod deleted gracefully releases it at once.
LEASE_SECONDS = 15
TOKEN_SECONDS = 600
# The API server accepts a ServiceAccount token this long past its expiry (go-jose's leeway).
TOKEN_LEEWAY_SECONDS = 60


@pytest.fixture(scope="module")
def installed(node_kubectl: Kubectl, operator_installed: float) -> float:
    """The operator installed, and a namespace for this module's certificates.

    The tests marked `after_the_rest` run after other modules' tests, so pytest builds this
    fixture a second time for them: the namespace may already be there.
    """
    if node_kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
        node_kubectl("create", "namespace", NAMESPACE)
    return operator_installed


def test_the_operator_runs_in_its_pods_as_deploy_says(
    node_kubectl: Kubectl, installed: float, tmp_path: Path
) -> None:
    pods = wait_operator_ready(node_kubectl)
    for pod in pods:
        [container] = pod["spec"]["containers"]
        [status] = pod["status"]["containerStatuses"]
        assert container["image"] == "localhost/mtls-operator:dev"
        assert status["imageID"], "the image the kubelet ran has a digest"
        in_pod = ("exec", "-n", OPERATOR_NAMESPACE, pod["metadata"]["name"], "--")
        user = node_kubectl(*in_pod, "id").stdout
        assert user.startswith("uid=65532 gid=65532"), user
        version = node_kubectl(*in_pod, "mtls-operator", "--version").stdout
        assert version.strip() == f"mtls-operator {__version__}"
        assert pod_get(pod, "/readyz")[0] == 200
    assert restart_counts(pods) == {pod["metadata"]["name"]: 0 for pod in pods}

    leader = leader_pod(node_kubectl)
    ca = get_json(node_kubectl, "secret", "mtls-operator-ca", "-n", OPERATOR_NAMESPACE)
    assert {"tls.crt", "tls.key"} <= set(ca["data"]), "the cluster CA was bootstrapped"
    issued = issue(node_kubectl, NAMESPACE, "first", tmp_path)
    assert issued["status"]["revision"] == 1

    status, metrics = pod_get(leader, "/metrics")
    assert status == 200
    ready = value(
        metrics,
        "mtls_operator_certificate_ready",
        namespace=NAMESPACE,
        name="first",
        secret="first-tls",
    )
    assert ready == 1.0


def test_pod_security_restricted_is_enforced_on_its_namespace(
    node_kubectl: Kubectl, installed: float
) -> None:
    namespace = get_json(node_kubectl, "namespace", OPERATOR_NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": OPERATOR_NAMESPACE},
        "spec": {
            "containers": [
                {
                    "name": "privileged",
                    "image": "localhost/mtls-workload:dev",
                    "imagePullPolicy": "Never",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    refused = node_kubectl("create", "-f", "-", input=json.dumps(privileged), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr


def test_the_node_is_held_to_what_its_pods_need(
    node_cluster: LocalCluster, node_kubectl: Kubectl, installed: float
) -> None:
    """The kubelet logs in as system:node:<name>: the Node authorizer lets it read only the
    Secrets of its own pods, and NodeRestriction keeps it off what is not its own."""
    as_node = Kubectl(node_kubectl.binary, node_cluster.node_paths.kubelet_kubeconfig)
    who = as_node("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    assert who == "system:node:mtls-node"
    ca = as_node("get", "secret", "mtls-operator-ca", "-n", OPERATOR_NAMESPACE, check=False)
    assert ca.returncode != 0
    assert "no relationship found between node" in ca.stderr
    restricted = as_node(
        "label", "node", "mtls-node", "node-restriction.kubernetes.io/x=y", check=False
    )
    assert restricted.returncode != 0
    assert "is not allowed to modify labels" in restricted.stderr


def test_nothing_is_written_to_its_root_filesystem(
    node_cluster: LocalCluster, node_kubectl: Kubectl, installed: float
) -> None:
    for pod in wait_operator_ready(node_kubectl):
        name = pod["metadata"]["name"]
        wrote = node_kubectl(
            "exec", "-n", OPERATOR_NAMESPACE, name, "--", "touch", "/written", check=False
        )
        assert "Read-only file system" in wrote.stderr
        [status] = pod["status"]["containerStatuses"]
        container_id = status["containerID"].removeprefix("containerd://")
        assert _written_files(node_cluster, container_id) == []


def _written_files(cluster: LocalCluster, container_id: str) -> list[str]:
    """What the container's writable layer holds beyond the mount points runc made in it
    (the volumes, /etc/hosts, /dev/termination-log, ...) before it mounted the root read-only:
    empty directories and files at the mounts' destinations, the image's symlinks followed."""
    ctr = [
        str(cluster.node_bin_dir / "ctr"),
        "--address",
        str(cluster.node_paths.containerd_socket),
        "--namespace",
        "k8s.io",
    ]
    info = json.loads(_run([*ctr, "containers", "info", container_id]))
    mounts = _run([*ctr, "snapshots", "--snapshotter", "overlayfs", "mounts", "/x", container_id])
    options = dict(
        option.split("=", 1) for option in mounts.split()[-1].split(",") if "=" in option
    )
    upper, layers = Path(options["upperdir"]), [Path(p) for p in options["lowerdir"].split(":")]
    points = {_resolved(Path(m["destination"]), layers) for m in info["Spec"]["mounts"]}
    allowed = points | {parent for point in points for parent in point.parents}
    written = []
    for path in upper.rglob("*"):
        inside = Path("/") / path.relative_to(upper)
        stub = path.is_dir() or (path.is_file() and path.stat().st_size == 0)
        if inside not in allowed or not stub:
            written.append(str(inside))
    return sorted(written)


def _resolved(path: Path, layers: list[Path]) -> Path:
    """`path` inside the image, its symlinks (such as Debian's /var/run -> /run) followed."""
    resolved = Path("/")
    for part in path.parts[1:]:
        candidate = resolved / part
        link = next(
            (
                layer / candidate.relative_to("/")
                for layer in layers
                if (layer / candidate.relative_to("/")).is_symlink()
            ),
            None,
        )
        if link is None:
            resolved = candidate
            continue
        target = Path(os.readlink(link))
        resolved = target if target.is_absolute() else (resolved / target)
        resolved = Path(os.path.normpath(resolved))
    return resolved


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_the_standby_takes_over_when_the_leader_pod_is_deleted(
    node_kubectl: Kubectl, installed: float, tmp_path: Path
) -> None:
    leader = leader_pod(node_kubectl)["metadata"]["name"]
    node_kubectl("delete", "pod", leader, "-n", OPERATOR_NAMESPACE, "--wait=false")
    took = seconds_to_ready(node_kubectl, NAMESPACE, "after-failover", tmp_path)
    print(f"a certificate applied as the leader's pod was deleted: Ready in {took:.1f} s")
    assert took < LEASE_SECONDS + 5, f"Ready {took:.1f} s after the leader's pod was deleted"
    assert leader_pod(node_kubectl)["metadata"]["name"] != leader
    # The Deployment replaces the pod: two replicas again.
    wait_operator_ready(node_kubectl)


# Up to the first token's life and its leeway, from whenever this test starts: more than
# pytest's default.
@pytest.mark.timeout(TOKEN_SECONDS + TOKEN_LEEWAY_SECONDS + 300)
@pytest.mark.after_the_rest
def test_it_keeps_working_across_the_kubelets_token_refresh(
    node_kubectl: Kubectl, installed: float, tmp_path: Path
) -> None:
    """The kubelet refreshes a projected token at 80 % of its life; the leader must go on with
    the new one once the first has expired, without a restart."""
    name = leader_pod(node_kubectl)["metadata"]["name"]
    first = _token_claims(node_kubectl, name)

    def refreshed() -> dict[str, Any] | None:
        claims = _token_claims(node_kubectl, name)
        return claims if claims["iat"] != first["iat"] else None

    wait_for(refreshed, timeout=TOKEN_SECONDS, interval=10, what=f"a new token in {name}")
    # Past the first token's expiry and the API server's leeway, the first request the pod
    # makes with it is refused: the client logs in again, and its watches must go on.
    time.sleep(max(0.0, first["exp"] + TOKEN_LEEWAY_SECONDS - time.time() + 5))
    issue(node_kubectl, NAMESPACE, "after-refresh", tmp_path)
    # The pod signer too: the kubelet posts a request, the pod starts once it is answered.
    node_kubectl("apply", "-f", "-", input=json.dumps(identity_pod(NAMESPACE, "after-refresh")))
    node_kubectl(
        "wait", "-n", NAMESPACE, "pod/after-refresh", "--for=condition=Ready", "--timeout=120s"
    )
    assert leader_pod(node_kubectl)["metadata"]["name"] == name, "no failover happened"
    pods = operator_pods(node_kubectl)
    assert restart_counts(pods)[name] == 0


def _token_claims(kubectl: Kubectl, pod: str) -> dict[str, Any]:
    token = kubectl(
        "exec",
        "-n",
        OPERATOR_NAMESPACE,
        pod,
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ).stdout
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    assert claims["exp"] - claims["iat"] == TOKEN_SECONDS
    return claims


# After the token test: the kubelet's restart would give the pods fresh tokens, and restart
# the token test's clock.
@pytest.mark.after_the_rest
def test_a_node_restart_reissues_nothing(
    node_cluster: LocalCluster, node_kubectl: Kubectl, installed: float, tmp_path: Path
) -> None:
    names = [f"before-restart-{index}" for index in range(5)]
    for name in names:
        issue(node_kubectl, NAMESPACE, name, tmp_path)
    before = _issued(node_kubectl)
    pods_before = {pod["metadata"]["name"] for pod in operator_pods(node_kubectl)}

    node_cluster.restart_node()

    pods = wait_operator_ready(node_kubectl)
    assert {pod["metadata"]["name"] for pod in pods} == pods_before
    assert set(restart_counts(pods).values()) == {0}, "the containers outlived containerd"
    issue(node_kubectl, NAMESPACE, "after-restart", tmp_path)
    after = _issued(node_kubectl)
    assert {name: after[name] for name in before} == before


def _issued(kubectl: Kubectl) -> dict[str, tuple[int, str]]:
    """Each certificate's revision and its Secret's resourceVersion."""
    certificates = get_json(kubectl, "mtlscertificates", "-n", NAMESPACE)["items"]
    secrets = {
        secret["metadata"]["name"]: secret["metadata"]["resourceVersion"]
        for secret in get_json(kubectl, "secrets", "-n", NAMESPACE)["items"]
    }
    return {
        item["metadata"]["name"]: (item["status"]["revision"], secrets[item["spec"]["secretName"]])
        for item in certificates
    }
