"""A CA rotation with `mtls-operator ca rotate` over three nginx Deployments that follow
reloads (tests/node/nginx_site.py), on a real node, while a caller pod calls each of them
over mTLS. The CA is a namespace's own (`caSecretName`), and signs the caller's certificate
too: each side must trust the other's through all three steps.

The operator is run with one roll every 10 s (`--workload-roll-rate 0.1
--workload-roll-burst 1`), so that the limit shows. Each nginx is rolled once per step
(each step changes what it mounts: a new ca.crt, a new certificate, the old root dropped),
no two rolls come together, `ca rotate` starts a step only once the rollouts of the last
step's rolls are done, and no request fails."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtls_operator.workloads.mounts import rolling

from localcluster import Kubectl, LocalCluster
from node.nginx_site import (
    Site,
    Watch,
    caller_certificate,
    make_namespace,
    open_site,
    restarted_for,
)
from node.operator_pods import OPERATOR_NAMESPACE, OVERLAY, get_json, wait_operator_ready
from support.authorities import root_from_ca_init
from support.cluster import wait_for

NAMESPACE = "rotation"
CA_SECRET = "rotation-ca"
SERVERS = ("alpha", "beta", "gamma")
ROLL_FLAGS = ("--workload-roll-rate=0.1", "--workload-roll-burst=1")
# Rolls come 10 s apart; two closer than this came together.
ROLL_GAP_SECONDS = 5.0
COMMAND = str(Path(sys.executable).parent / "mtls-operator")


def roll_out_operator(kubectl: Kubectl) -> None:
    kubectl(
        "rollout",
        "status",
        "-n",
        OPERATOR_NAMESPACE,
        "deployment/mtls-operator",
        "--timeout=180s",
        timeout=200,
    )
    wait_operator_ready(kubectl)


@pytest.fixture(scope="module")
def slow_rolls(node_kubectl: Kubectl, operator_installed: float) -> Iterator[None]:
    """The installed operator with ROLL_FLAGS added, as deploy/ was installed after."""
    added = [
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": flag}
        for flag in ROLL_FLAGS
    ]
    where = ("deployment", "mtls-operator", "-n", OPERATOR_NAMESPACE)
    node_kubectl("patch", *where, "--type=json", "-p", json.dumps(added))
    roll_out_operator(node_kubectl)
    yield
    node_kubectl("apply", "--server-side", "--force-conflicts", "-k", str(OVERLAY), timeout=120)
    roll_out_operator(node_kubectl)


@pytest.fixture(scope="module")
def site(
    node_cluster: LocalCluster,
    node_kubectl: Kubectl,
    slow_rolls: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    kubectl = node_kubectl
    make_namespace(kubectl, NAMESPACE)
    root, key = root_from_ca_init(tmp_path_factory.mktemp("rotation-ca"), "Rotation CA")
    data = {
        name: base64.b64encode(value).decode()
        for name, value in {"tls.crt": root, "tls.key": key, "ca.crt": root}.items()
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": data,
    }
    certificates = [
        {
            "apiVersion": "mtls.dev/v1alpha1",
            "kind": "MtlsCertificate",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "secretName": f"{name}-tls",
                "usage": "server",
                "dnsNames": [f"{name}.{NAMESPACE}.svc"],
                "caSecretName": CA_SECRET,
            },
        }
        for name in SERVERS
    ]
    items = [secret, *certificates]
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    for name in SERVERS:
        kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", f"mtlscertificate/{name}")
    yield open_site(
        kubectl,
        node_cluster.kubeconfig,
        NAMESPACE,
        followers=SERVERS,
        others=(),
        caller_certificate=caller_certificate(NAMESPACE, caSecretName=CA_SECRET),
    )
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=180)


def rolls(seen: list[tuple[float, dict[str, Any]]]) -> list[tuple[float, float | None]]:
    """Each roll of a Deployment, from every version its watch delivered: when its pod
    template was first seen with a new digest, and when its rollout was first seen done."""
    found: list[tuple[float, float | None]] = []
    digest = restarted_for(seen[0][1])
    for at, body in seen:
        if restarted_for(body) != digest:
            digest = restarted_for(body)
            found.append((at, None))
        if found and found[-1][1] is None and not rolling(body):
            found[-1] = (found[-1][0], at)
    return found


def test_a_ca_rotation_rolls_each_nginx_once_per_step_and_fails_no_request(
    site: Site, tmp_path: Path
) -> None:
    root_from_ca_init(tmp_path / "new", "Rotation CA 2")
    argv = [COMMAND, "ca", "rotate", CA_SECRET, "-n", NAMESPACE, "--new-ca-dir"]
    argv += [str(tmp_path / "new"), "--timeout", "10m", "--kubeconfig", str(site.kubeconfig)]
    with contextlib.ExitStack() as stack:
        ca = stack.enter_context(Watch(site.kubectl, NAMESPACE, "secret", CA_SECRET))
        watches = {
            name: stack.enter_context(Watch(site.kubectl, NAMESPACE, "deployment", name))
            for name in SERVERS
        }
        # Each watch delivers the current version first: they are watching from now on.
        wait_for(
            lambda: ca.seen and all(watch.seen for watch in watches.values()),
            timeout=30,
            what="the watches",
        )
        started = time.time()
        rotated = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        ended = time.time()
        for name in SERVERS:
            site.rolled_out_and_answering(name)
    steps = [at for at, _ in ca.seen[1:]]
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    for step in (1, 2, 3):
        waited = f"waiting: 3 workload(s) not rolled for step {step} yet: Deployment {NAMESPACE}/"
        assert any(line.startswith(waited) for line in rotated.stdout.splitlines()), rotated.stdout
    assert len(steps) == 3, "one write of the CA Secret a step"

    by_server = {name: rolls(watch.seen) for name, watch in watches.items()}
    for name, found in by_server.items():
        assert len(found) == 3, f"{name} rolled {len(found)} times, not once a step"
        assert len(site.rolled_events(name)) == 3
        for (rolled, done), step_written in zip(found, steps, strict=True):
            assert done is not None, f"{name}'s rollout never seen done"
            assert rolled > step_written
        # A step is written only once the rollouts of the last step's rolls were done.
        for (_, done), next_step in zip(found[:2], steps[1:], strict=True):
            assert done is not None
            assert done < next_step
    moments = sorted(rolled for found in by_server.values() for rolled, _ in found)
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert min(gaps) >= ROLL_GAP_SECONDS, gaps

    requests = [r for name in SERVERS for r in site.requests(name)]
    failed = [request for request in requests if not request["ok"]]
    assert not failed, failed[:5]
    during = [request for request in requests if started <= request["time"] <= ended]
    for name in SERVERS:
        status = get_json(site.kubectl, "mtlscertificate", name, "-n", NAMESPACE)["status"]
        assert "Rotation CA 2" in status["issuer"]
        assert site.serial(name) in {int(r["serial"], 16) for r in site.requests(name, ended)}
    print(
        f"\nCA rotated over 3 nginx Deployments in {ended - started:.0f} s; rolls "
        f"{len(moments)} (3 a Deployment), closest two {min(gaps):.1f} s apart; requests "
        f"{len(requests)} ({len(during)} during the rotation), failed {len(failed)}"
    )
