"""An in-memory stand-in for the operator's API client and CA store, and a
certificate controller built on them, for unit tests of reconciliations.
Only the calls the controller makes for Secrets, status and Events are
served; end-to-end tests use a real API server."""

from __future__ import annotations

import asyncio
import copy
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from mtls_operator.authorities.store import AuthorityStore, CAMissing, CARef, CAState
from mtls_operator.certificates.controller import CertificateController, Settings
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.revocations.store import Revocations
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import InformerGroup, SharedCache
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import Kube, Object
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.reflector import Reflector
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
        the name and a label selector of `key=value` terms; any other
        selector is refused rather than ignored."""
        selectors = dict(params or {})
        name = selectors.pop("fieldSelector", "metadata.name=").removeprefix("metadata.name=")
        labels = dict(
            term.split("=", 1) for term in selectors.pop("labelSelector", "").split(",") if term
        )
        if selectors or "=" in name or any("!" in key for key in labels):
            raise NotImplementedError(f"FakeKube lists by name and label only, not by {params}")
        items = [
            copy.deepcopy(stored)
            for stored_path, stored in self.objects.items()
            if stored_path.rpartition("/")[0] == path
            and (not name or stored_path.rpartition("/")[2] == name)
            and labels.items() <= (stored["metadata"].get("labels") or {}).items()
        ]
        return items, str(next(self._versions))

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, **_: Any
    ) -> Object:
        """What `list_pages` asks for (the reflectors' lists): `list`, in one page."""
        if method != "GET":
            raise NotImplementedError(f"FakeKube does not serve {method} {path}")
        query = {key: value for key, value in (params or {}).items() if key != "limit"}
        items, version = await self.list(path, query)
        return {"items": items, "metadata": {"resourceVersion": version}}

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


class NamedWatches(FakeKube):
    """Watches one object by name (a field selector on it): each object
    stored or deleted is an event of the watches open on its name."""

    def __init__(self) -> None:
        super().__init__()
        self._watchers: list[tuple[str, asyncio.Queue[tuple[str, Object]]]] = []
        self.listed: list[str] = []  # the names listed, in order
        self.idle = 0  # watches waiting for an event

    @property
    def open(self) -> list[str]:
        """The paths of the objects watched now, one entry per watch."""
        return [watched for watched, _ in self._watchers]

    def put(self, path: str, body: Object) -> Object:
        event = "MODIFIED" if path in self.objects else "ADDED"
        stored = super().put(path, body)
        self._tell(path, event, stored)
        return stored

    def remove(self, path: str) -> None:
        self._tell(path, "DELETED", self.objects.pop(path))

    async def list(
        self, path: str, params: Mapping[str, str] | None = None, **_: Any
    ) -> tuple[list[Object], str]:
        self.listed.append(_watched_name(params))
        return await super().list(path, params)

    async def watch(
        self, path: str, resource_version: str, params: Mapping[str, str] | None = None, **_: Any
    ) -> AsyncIterator[tuple[str, Object]]:
        watcher = (f"{path}/{_watched_name(params)}", asyncio.Queue[tuple[str, Object]]())
        self._watchers.append(watcher)
        try:
            while True:
                self.idle += 1
                try:
                    event = await watcher[1].get()
                finally:
                    self.idle -= 1
                yield event
        finally:
            self._watchers.remove(watcher)

    async def delivered(self) -> None:
        """Returns once every watch has handled every event so far (each
        handles one, synchronously, before it asks for the next)."""
        while self.idle < len(self._watchers) or any(not q.empty() for _, q in self._watchers):
            await asyncio.sleep(0)

    def _tell(self, path: str, event: str, obj: Object) -> None:
        for watched, queue in self._watchers:
            if watched == path:
                queue.put_nowait((event, copy.deepcopy(obj)))


def _watched_name(params: Mapping[str, str] | None) -> str:
    return dict(params or {})["fieldSelector"].removeprefix("metadata.name=")


def runtime_cache(kube: Kube, clock: Any) -> SharedCache:
    """The cache of a runtime of its own: its reflectors run, and stop, as
    the operator's do."""
    return Runtime(kube, clock, Metrics(), workers=1, crypto_threads=1).cache


class RecordedWatches:
    """A runtime's `watch` that runs nothing: the names of the reflectors
    it is given, and of those it was told to stop."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names = [] if names is None else names
        self.reflectors: list[Reflector] = []
        self.stopped: list[str] = []

    def __call__(self, reflector: Reflector, name: str) -> Callable[[], None]:
        self.names.append(name)
        self.reflectors.append(reflector)
        return functools.partial(self.stopped.append, name)


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
        SharedParts(runtime, FixedCAs(cas), tenancy, Revocations(runtime.cache, runtime.kube, ())),
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
