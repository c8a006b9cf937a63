"""An in-memory stand-in for the operator's API client and CA store, and a
certificate controller built on them, for unit tests of reconciliations.
Only the calls the controller makes for Secrets, status and Events are
served; end-to-end tests use a real API server."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from mtls_operator.authorities.store import AuthorityStore, CAMissing, CARef, CAState
from mtls_operator.certificates.controller import CertificateController, Settings
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import InformerGroup
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import Kube, Object
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.shared import SharedParts
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.objects import apply_merge_patch


class FakeKube(Kube):
    """Objects by path; merge patches honour a resourceVersion precondition.
    Lists read what is stored (by name only); watches deliver no change."""

    def __init__(self) -> None:  # no connection, deliberately
        self.objects: dict[str, Object] = {}
        self.writes: list[tuple[str, str]] = []
        self.reads: list[str] = []
        self._versions = itertools.count(1000)
        self._generated = itertools.count(1)

    def created(self, collection: str) -> list[Object]:
        """What was created in `collection` (Events, say), in the order written."""
        return [
            body for path, body in self.objects.items() if path.rpartition("/")[0] == collection
        ]

    def put(self, path: str, body: Object) -> Object:
        stored = copy.deepcopy(body)
        stored.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        self.objects[path] = stored
        return copy.deepcopy(stored)

    async def get(
        self, path: str, *, retry: bool = True, timeout: float = 30.0, cached: bool = False
    ) -> Object | None:
        self.reads.append(path)
        found = self.objects.get(path)
        return copy.deepcopy(found) if found is not None else None

    async def create(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = 30.0
    ) -> Object:
        self.writes.append(("POST", path))
        # A generated name is unique, as the API server makes it.
        name = body["metadata"].get("name") or (
            f"{body['metadata'].get('generateName', '')}{next(self._generated)}"
        )
        target = f"{path}/{name}"
        if target in self.objects:
            raise ApiError(409, "AlreadyExists", f"{target} exists")
        return self.put(target, body)

    async def replace(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = 30.0
    ) -> Object:
        self.writes.append(("PUT", path))
        current = self.objects.get(path)
        if current is None:
            raise ApiError(404, "NotFound", f"{path} not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self.put(path, body)

    async def merge_patch(self, path: str, patch: Object) -> Object:
        self.writes.append(("PATCH", path))
        target = path.removesuffix("/status")
        current = self.objects.get(target)
        if current is None:
            raise ApiError(404, "NotFound", f"{target} not found")
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        return self.put(target, apply_merge_patch(current, patch))

    async def list(
        self, path: str, params: Mapping[str, str] | None = None, *, metadata_only: bool = False
    ) -> tuple[list[Object], str]:
        """The objects of collection `path`, narrowed by a field selector on
        the name; any other selector is refused rather than ignored."""
        selectors = dict(params or {})
        name = selectors.pop("fieldSelector", "metadata.name=").removeprefix("metadata.name=")
        if selectors or "=" in name:
            raise NotImplementedError(f"FakeKube lists by name only, not by {params}")
        items = [
            copy.deepcopy(stored)
            for stored_path, stored in self.objects.items()
            if stored_path.rpartition("/")[0] == path
            and (not name or stored_path.rpartition("/")[2] == name)
        ]
        return items, str(next(self._versions))

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        *,
        metadata_only: bool = False,
    ) -> AsyncIterator[tuple[str, Object]]:
        """Stays open, delivering nothing, until it is cancelled."""
        await asyncio.Event().wait()
        yield "BOOKMARK", {}  # never reached: makes this an async generator


class FixedCAs(AuthorityStore):
    """Every CA reference resolves to the CA given; nothing is watched."""

    def __init__(self, states: dict[CARef, CAState]) -> None:  # no watches, deliberately
        self._states = states
        self._publishing: set[CARef] = set()
        self._published: dict[CARef, str] = {}

    def use(
        self, ref: CARef, notify: Callable[[Any], None], key: Hashable, *, tenant: bool = False
    ) -> str | None:
        """Nothing to watch."""
        return None

    def release(self, notify: Callable[[Any], None], key: Hashable) -> None:
        """Nothing was watched."""

    async def state(self, ref: CARef) -> CAState:
        return self._states.get(ref, CAMissing(f"CA Secret {ref} does not exist"))


CLUSTER_CA = CARef("mtls-system", "mtls-operator-ca")


@contextmanager
def certificate_controller(
    kube: FakeKube,
    cas: dict[CARef, CAState],
    clock: Any,
    *,
    min_duration: Any,
    reissue_rate: float = 20.0,
    identity: IdentityMode = IdentityMode.OPEN,
    policies: Sequence[Object] = (),
    namespaces: Sequence[Object] = (),
) -> Iterator[tuple[Runtime, CertificateController]]:
    """A controller over `kube` whose cluster CA is CLUSTER_CA (only the
    namespaces and MtlsPolicies given are known: the identity policy is open
    by default)."""
    runtime = Runtime(kube, clock, Metrics(), workers=1, crypto_threads=1)
    tenancy = Tenancy(runtime, IdentitySettings(identity))
    tenancy.namespace_informer.replace(list(namespaces))
    tenancy.policy_informer.replace(list(policies))
    controller = CertificateController(
        SharedParts(runtime, FixedCAs(cas), tenancy),
        Settings(CLUSTER_CA, min_duration, reissue_rate=reissue_rate),
    )
    controller.store.follow()  # what `start` does once the Secrets are listed
    try:
        yield runtime, controller
    finally:
        runtime.executor.shutdown(wait=True)


def delivered(group: InformerGroup[Any], body: Object, event_type: str = "MODIFIED") -> None:
    """`body` as its watch delivers it to the informer of its namespace."""
    informer = group.of(body["metadata"]["namespace"])
    assert informer is not None, body["metadata"]
    informer.apply(event_type, body)


def written_paths(kube: FakeKube, verb: str = "PATCH") -> list[str]:
    return [path for method, path in kube.writes if method == verb]


def status_of(kube: FakeKube, path: str) -> dict[str, Any]:
    return dict(kube.objects[path].get("status") or {})
