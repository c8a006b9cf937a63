"""Secrets that objects name (a keystore password, for instance), each kept
current by a watch filtered to its name while someone names it, so that a
change reaches everyone who uses it at once, and nothing else is watched."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mtls_operator.api.secret_data import decode_data
from mtls_operator.runtime.kube import Kube, Object, ObjectKey, secrets_path
from mtls_operator.runtime.reflector import Reflector

User = TypeVar("User", bound=Hashable)

# How long a reader waits for the first read of a Secret just come into use.
FIRST_READ_TIMEOUT = 10.0


@dataclass
class _Watched(Generic[User]):
    data: dict[str, bytes] | None = None
    read: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    users: set[User] = field(default_factory=set)


class OneSecretSink:
    """Receives the events of a watch filtered to one Secret name."""

    def __init__(self, on_update: Callable[[Object | None], None]) -> None:
        self._on_update = on_update

    def replace(self, items: list[Object]) -> None:
        self._on_update(items[0] if items else None)

    def apply(self, event_type: str, obj: Object) -> None:
        self._on_update(None if event_type == "DELETED" else obj)


class NamedSecrets(Generic[User]):
    """`use(secret, user)`: `notify(user)` is called whenever `secret`
    (namespace, name) is created, changed or deleted."""

    def __init__(self, kube: Kube, notify: Callable[[User], None]) -> None:
        self._kube = kube
        self._notify = notify
        self._watched: dict[ObjectKey, _Watched[User]] = {}
        self._used: dict[User, ObjectKey] = {}

    def use(self, secret: ObjectKey, user: User) -> None:
        previous = self._used.get(user)
        if previous == secret:
            return
        self._used[user] = secret
        watched = self._watched.get(secret)
        if watched is None:
            watched = self._watched[secret] = _Watched[User]()
            watched.task = asyncio.create_task(self._watch(secret, watched))
        watched.users.add(user)
        if previous is not None:
            self._drop(previous, user)

    def release(self, user: User) -> None:
        previous = self._used.pop(user, None)
        if previous is not None:
            self._drop(previous, user)

    async def data(self, secret: ObjectKey) -> dict[str, bytes] | None:
        """The Secret's data as last seen (None: it does not exist, or is not
        in use); waits for the first read of a Secret just come into use."""
        watched = self._watched.get(secret)
        if watched is None:
            return None
        try:
            await asyncio.wait_for(watched.read.wait(), timeout=FIRST_READ_TIMEOUT)
        except TimeoutError:
            return None  # its watch keeps trying, and tells the users when it has read it
        return watched.data

    async def close(self) -> None:
        tasks = [w.task for w in self._watched.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop(self, secret: ObjectKey, user: User) -> None:
        watched = self._watched.get(secret)
        if watched is None:
            return
        watched.users.discard(user)
        if not watched.users:
            del self._watched[secret]
            if watched.task is not None:
                watched.task.cancel()

    async def _watch(self, secret: ObjectKey, watched: _Watched[User]) -> None:
        namespace, name = secret

        def update(obj: Object | None) -> None:
            data = decode_data(obj.get("data")) if obj is not None else None
            changed = watched.read.is_set() and data != watched.data
            watched.data = data
            watched.read.set()
            if changed:
                for user in list(watched.users):
                    self._notify(user)

        reflector = Reflector(
            self._kube,
            secrets_path(namespace),
            OneSecretSink(update),
            {"fieldSelector": f"metadata.name={name}"},
        )
        await reflector.run()
