"""A task that runs beside a scenario's bursts until it is stopped."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod


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
