"""How long `ca rotate` waits between steps: what the slowest kubelet takes to bring a
Secret's change into the pods, read from each node's configuration."""

from __future__ import annotations

import datetime
from typing import Any, cast

import pytest

from mtls_operator.cli.kubelet_sync import propagation
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Kube

from support.loop import run

FORBIDDEN = ApiError(403, "Forbidden", "nodes is forbidden")


class Nodes:
    """The two reads `propagation` makes: the node list, and each node's /configz."""

    def __init__(self, sync: dict[str, str | ApiError], listing: ApiError | None = None) -> None:
        self.sync, self.listing = sync, listing

    async def list(self, path: str, **_: Any) -> tuple[list[dict[str, Any]], str]:
        assert path == "/api/v1/nodes"
        if self.listing is not None:
            raise self.listing
        return [{"metadata": {"name": name}} for name in self.sync], "1"

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        name = path.removeprefix("/api/v1/nodes/").removesuffix("/proxy/configz")
        found = self.sync[name]
        if isinstance(found, ApiError):
            raise found
        return {"kubeletconfig": {"syncFrequency": found}}


@pytest.mark.parametrize(
    ("nodes", "seconds", "said"),
    [
        (Nodes({}), 0, "no nodes"),
        (Nodes({"a": "1m0s"}), 100, "syncFrequency 1m (the slowest of 1 nodes)"),
        (Nodes({"a": "10s", "b": "1m0s"}), 100, "the slowest of 2 nodes"),
        (Nodes({"a": "10s"}), 25, "syncFrequency 10s"),
        (Nodes({"a": "10s", "b": FORBIDDEN}), 100, "of b could not be read"),
        (Nodes({}, listing=FORBIDDEN), 100, "the nodes could not be listed (Forbidden)"),
    ],
)
def test_the_wait_is_the_slowest_kubelets_sync_with_its_jitter(
    nodes: Nodes, seconds: int, said: str
) -> None:
    found = run(lambda: propagation(cast(Kube, nodes)))
    assert found.bound == datetime.timedelta(seconds=seconds)
    assert said in found.how
