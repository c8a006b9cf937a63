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

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtls_operator.api.workloads import MOUNTED_DIGEST_ANNOTATION

from e2e.plugin import kubectl_mtls
from localcluster import Kubectl, LocalCluster
from node.nginx_site import (
    SETTLE,
    Site,
    Watch,
    caller_certificate,
    leaf_serial,
    make_namespace,
    open_site,
    restarted_for,
)
from node.operator_pods import is_ready, issue, restart_counts
from node.test_workloads_in_pods import PROPAGATION_SECONDS
from support.cluster import wait_for

NAMESPACE = "nginx"
FOLLOWER, STATIC = "web", "static"
SERVERS = (FOLLOWER, STATIC)


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
    make_namespace(kubectl, NAMESPACE)
    issued = tmp_path_factory.mktemp("nginx-certificates")
    for name in SERVERS:
        issue(kubectl, NAMESPACE, name, issued)
    running = open_site(
        kubectl,
        node_cluster.kubeconfig,
        NAMESPACE,
        followers=[FOLLOWER],
        others=[STATIC],
        caller_certificate=caller_certificate(NAMESPACE),
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
        Watch(site.kubectl, NAMESPACE, "secret", f"{FOLLOWER}-tls") as secret,
        Watch(site.kubectl, NAMESPACE, "deployment", FOLLOWER) as deployment,
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
    with Watch(site.kubectl, NAMESPACE, "secret", f"{STATIC}-tls") as secret:
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
