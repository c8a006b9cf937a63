"""The operator assembled from its settings: what a switch turns off is
not watched at all, so that a cluster may withhold its permissions."""

from __future__ import annotations

import dataclasses

import kopf
import pytest

from mtls_operator.app import Operator, OperatorConfig
from mtls_operator.authorities.store import CARef
from mtls_operator.runtime.metrics import Metrics

from support.clock import NOW, FakeClock

CONFIG = OperatorConfig(namespaces=("shop", "bank"), cluster_ca=CARef("ops", "ca"))
APPS = {
    f"/apis/apps/v1/namespaces/{namespace}/{plural}"
    for namespace in ("shop", "bank")
    for plural in ("deployments", "statefulsets", "daemonsets")
}


async def no_login() -> kopf.ConnectionInfo:
    raise AssertionError("nothing is called while the operator is assembled")


def watched(config: OperatorConfig) -> set[str]:
    return Operator(config, no_login, Metrics(), FakeClock(NOW)).runtime.cache.paths()


@pytest.mark.parametrize("rolls", [True, False])
def test_workloads_are_watched_in_the_served_namespaces_only_while_rolls_are_on(
    rolls: bool,
) -> None:
    paths = watched(dataclasses.replace(CONFIG, workload_rolls=rolls))
    assert {p for p in paths if p.startswith("/apis/apps/")} == (APPS if rolls else set())
    # The managed Secrets are watched either way, once per namespace.
    assert {"/api/v1/namespaces/shop/secrets", "/api/v1/namespaces/bank/secrets"} <= paths
