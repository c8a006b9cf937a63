"""Resource paths as the API server serves them: the core group under /api,
the others under /apis; namespaced, every namespace's, cluster-scoped."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_operator.api.paths import group_version_path, resource_path


@pytest.mark.parametrize(
    ("arguments", "path"),
    [
        (("v1", "secrets"), "/api/v1/secrets"),
        (("v1", "secrets", "shop"), "/api/v1/namespaces/shop/secrets"),
        (("v1", "secrets", "shop", "web-tls"), "/api/v1/namespaces/shop/secrets/web-tls"),
        (("v1", "nodes", None, "n1", "proxy/configz"), "/api/v1/nodes/n1/proxy/configz"),
        (
            ("coordination.k8s.io/v1", "leases", "ops", "op"),
            "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op",
        ),
        (
            ("mtls.dev/v1alpha1", "mtlspolicies", None, "p", "status"),
            "/apis/mtls.dev/v1alpha1/mtlspolicies/p/status",
        ),
    ],
)
def test_resource_path(arguments: tuple[Any, ...], path: str) -> None:
    assert resource_path(*arguments) == path


def test_group_version_path() -> None:
    assert group_version_path("v1") == "/api/v1"
    assert group_version_path("certificates.k8s.io/v1") == "/apis/certificates.k8s.io/v1"
