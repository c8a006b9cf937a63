"""A task that runs beside a scenario's bursts until it is stopped."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from mtls_operator.runtime.kube import Kube


class Background(ABC):
    """Started once the cluster is ready, cancelled when the scenario ends."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    @abstractmethod
    async def _run(self) -> None: ...


async def follow(kube: Kube, path: str, note: Callable[[dict[str, Any]], None]) -> None:
    """Every object of `path` to `note`, listed then watched, until cancelled:
    listed again whenever the watch fails, so that nothing is missed."""
    items, version = await kube.list(path)
    for item in items:
        note(item)
    while True:
        try:
            async for _, obj in kube.watch(path, version):
                version = obj.get("metadata", {}).get("resourceVersion", version)
                note(obj)
        except Exception:  # reconnect on any stream failure
            items, version = await kube.list(path)
            for item in items:
                note(item)
