"""A watch that notes when each MtlsCertificate of a namespace is Ready:
what times every burst, the operator's and the bare client's alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from mtls_operator.api.resources import certificates_path
from mtls_operator.api.status import ready_condition
from mtls_operator.runtime.kube import Kube

from bench.background import Background, follow


def is_ready(status: Mapping[str, Any]) -> bool:
    condition = ready_condition(status)
    return condition is not None and condition.get("status") == "True"


class ReadyWatch(Background):
    """Follows every MtlsCertificate of a namespace and notes when each
    first reports Ready=True, and each Ready revision it reports."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__()
        self.kube, self.namespace = kube, namespace
        self.ready_at: dict[str, float] = {}
        self.revisions: dict[str, int] = {}
        self.changed = asyncio.Event()

    async def wait(self, names: set[str] | int, timeout: float = 1800.0) -> float:
        return await self.wait_until(lambda: self._reached(names), timeout, names)

    async def wait_until(
        self, done: Callable[[], bool], timeout: float = 1800.0, what: object = "done"
    ) -> float:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.ready_at)} Ready, wanted {what}")
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            except TimeoutError:
                continue
        return time.monotonic()

    def _reached(self, names: set[str] | int) -> bool:
        if isinstance(names, int):
            return len(self.ready_at) >= names
        return names <= self.ready_at.keys()

    async def _run(self) -> None:
        await follow(self.kube, certificates_path(self.namespace), self._note)

    def _note(self, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name")
        status = obj.get("status") or {}
        if not is_ready(status):
            return
        if name not in self.ready_at:
            self.ready_at[name] = time.monotonic()
        self.revisions[name] = int(status.get("revision") or 0)
        self.changed.set()
