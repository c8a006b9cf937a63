"""An in-memory stand-in for the operator's API client and CA cache, for
unit tests of one reconciliation. Only the calls the reconciler makes for
Secrets, status and Events are served; end-to-end tests use a real API server."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from mtls_operator.cas import CAMissing, CARef, CAState, CAStore
from mtls_operator.kube import ApiError, Kube, Object

from helpers.objects import apply_merge_patch


class FakeKube(Kube):
    """Objects by path; merge patches honour a resourceVersion precondition."""

    def __init__(self) -> None:  # no connection, deliberately
        self.objects: dict[str, Object] = {}
        self.writes: list[tuple[str, str]] = []
        self._versions = itertools.count(1000)

    def put(self, path: str, body: Object) -> Object:
        stored = copy.deepcopy(body)
        stored.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        self.objects[path] = stored
        return copy.deepcopy(stored)

    async def get(self, path: str, *, retry: bool = True, timeout: float = 30.0) -> Object | None:
        found = self.objects.get(path)
        return copy.deepcopy(found) if found is not None else None

    async def create(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = 30.0
    ) -> Object:
        self.writes.append(("POST", path))
        name = body["metadata"].get("name") or f"{body['metadata'].get('generateName', '')}x"
        target = f"{path}/{name}"
        if target in self.objects:
            raise ApiError(409, "AlreadyExists", f"{target} exists")
        return self.put(target, body)

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


class FixedCAs(CAStore):
    """Every CA reference resolves to the CA given."""

    def __init__(self, states: dict[CARef, CAState]) -> None:  # no watches, deliberately
        self._states = states

    async def get(self, ref: CARef) -> CAState:
        return self._states.get(ref, CAMissing(f"CA Secret {ref} does not exist"))

    def forget(self, ref: CARef) -> None:
        """Nothing is watched here."""


def written_paths(kube: FakeKube, verb: str = "PATCH") -> list[str]:
    return [path for method, path in kube.writes if method == verb]


def status_of(kube: FakeKube, path: str) -> dict[str, Any]:
    return dict(kube.objects[path].get("status") or {})
