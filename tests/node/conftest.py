"""Fixtures for tests on a real node: a local cluster whose node runs a kubelet, containerd
and runc on this machine (hack/localcluster.py, hack/localnode.py), with the images built
from the project's Dockerfile and Debian packages (hack/images.py), never pulled.

One node serves the package. Its teardown ends it the hard way, as if the test run had been
killed (every process SIGKILLed, nothing cleaned up), then runs `localcluster.py down` as
`make cluster-down` would, and checks that nothing of the node is left on the machine: no
process, mount, cgroup, network interface or host claim.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import localnode
from images import built_tarballs, node_bin_dir
from localcluster import REPO_ROOT, Kubectl, LocalCluster, control_plane_bin_dir, remove_data
from localnode import NodeSpec
from node.operator_pods import OVERLAY, wait_operator_ready

NODE_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test of over half an hour runs only when a -m expression names it.
    if "long" not in config.getoption("markexpr"):
        long = [item for item in items if item.get_closest_marker("long")]
        if long:
            config.hook.pytest_deselected(items=long)
            items[:] = [item for item in items if item not in long]
    for item in items:
        if item.path.is_relative_to(NODE_TESTS):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.node)
    # A test that waits on a clock started by the install (the kubelet's token refresh) goes
    # after the package's others, which then run during its wait instead of after it; still
    # within the package, whose node and install it shares.
    waiting = [item for item in items if item.get_closest_marker("after_the_rest")]
    rest = [item for item in items if item not in waiting]
    ours = [index for index, item in enumerate(rest) if item.path.is_relative_to(NODE_TESTS)]
    end = ours[-1] + 1 if ours else len(rest)
    items[:] = rest[:end] + waiting + rest[end:]


@pytest.fixture(scope="package")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    node = NodeSpec(node_bin_dir(), tuple(built_tarballs()))
    cluster = LocalCluster.start(
        tmp_path_factory.mktemp("node-cluster"), control_plane_bin_dir(), node=node
    )
    try:
        yield cluster
    finally:
        for process in cluster.processes:
            process.signal(signal.SIGKILL)
            process.wait(10)  # reaped, as the killed run's own exit would have done
        elsewhere = tmp_path_factory.mktemp("no-cluster")
        down = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "hack" / "localcluster.py"),
                "down",
                "--dir",
                str(elsewhere),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        remove_data(cluster.state_dir)
        left = localnode.leftovers()
        assert down.returncode == 0, down.stderr
        assert "removing what the node of" in down.stderr
        assert not left, f"the node left these on the machine: {left}"


@pytest.fixture(scope="package")
def operator_installed(node_kubectl: Kubectl) -> float:
    """The operator as `kubectl apply -k deploy/overlays/local` installs it, both replicas
    Ready; when the install began. It stays for the package (the node goes at its end)."""
    began = time.time()
    node_kubectl("apply", "--server-side", "-k", str(OVERLAY), timeout=120)
    wait_operator_ready(node_kubectl)
    return began


@pytest.fixture(scope="package")
def node_kubectl(node_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(
        node_cluster.bin_dir / "kubectl",
        node_cluster.kubeconfig,
        cache_dir=tmp_path_factory.mktemp("node-kubectl-cache"),
    )
