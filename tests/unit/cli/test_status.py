"""`mtls-operator status -o wide` names, for each certificate, the workloads
that follow reloads and mount its Secret: the ones it rolls."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping

import pytest

from mtls_operator.api.resources import certificates_path
from mtls_operator.api.workloads import WorkloadKind, workloads_path
from mtls_operator.cli import cluster
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Object

from support.fake_api import FakeKube
from support.objects import certificate_body
from support.workloads import workload_body

NAMESPACE = "shop"


class ForbiddenWorkloads(FakeKube):
    """A user who may read certificates but not workloads."""

    async def list(
        self, path: str, params: Mapping[str, str] | None = None, *, metadata_only: bool = False
    ) -> tuple[list[Object], str]:
        if "/apps/" in path:
            raise ApiError(403, "Forbidden", "deployments.apps is forbidden")
        return await super().list(path, params, metadata_only=metadata_only)


def cluster_with_workloads(kube: FakeKube) -> FakeKube:
    for name in ("web", "db", "plain"):
        kube.put(
            certificates_path(NAMESPACE, name), certificate_body(name, secretName=f"{name}-tls")
        )
    for name, kind, secrets, follows in (
        ("web", WorkloadKind.DEPLOYMENT, ["web-tls"], True),
        ("cache", WorkloadKind.STATEFUL_SET, ["web-tls", "db-tls"], True),
        ("agent", WorkloadKind.DAEMON_SET, ["db-tls"], True),
        ("legacy", WorkloadKind.DEPLOYMENT, ["web-tls", "plain-tls"], False),
    ):
        body = workload_body(name, kind=kind, namespace=NAMESPACE, secrets=secrets, follows=follows)
        kube.put(workloads_path(kind, NAMESPACE, name), body)
    return kube


def status(kube: FakeKube, output: str) -> None:
    args = argparse.Namespace(
        output=output, namespace=NAMESPACE, all_namespaces=False, kubeconfig=None, context=None
    )
    assert asyncio.run(cluster._status(kube, args)) == 0


def column(out: str, heading: str) -> dict[str, str]:
    """Each row's NAME and the cell under `heading`."""
    header, *lines = out.splitlines()
    start = header.index(heading)
    return {line.split()[0]: line[start:].split()[0] for line in lines}


def test_wide_names_the_workloads_that_follow_each_certificate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status(cluster_with_workloads(FakeKube()), "wide")
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[-4:] == ["SERIAL", "REVISION", "WORKLOADS", "MESSAGE"]
    assert column(out, "WORKLOADS") == {
        "db": "DaemonSet/agent,StatefulSet/cache",
        "plain": "-",  # mounted only by a workload that does not follow reloads
        "web": "Deployment/web,StatefulSet/cache",
    }


def test_the_plain_table_lists_no_workloads(capsys: pytest.CaptureFixture[str]) -> None:
    # Listing workloads would be refused: the plain table never asks.
    status(cluster_with_workloads(ForbiddenWorkloads()), "table")
    captured = capsys.readouterr()
    assert "WORKLOADS" not in captured.out
    assert len(captured.out.splitlines()) == 4
    assert captured.err == ""


def test_a_user_who_may_not_list_workloads_gets_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status(cluster_with_workloads(ForbiddenWorkloads()), "wide")
    captured = capsys.readouterr()
    assert set(column(captured.out, "WORKLOADS").values()) == {"?"}
    assert captured.err == "WORKLOADS unknown: deployments.apps is forbidden\n"
