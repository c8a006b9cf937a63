"""Secrets that objects name (a keystore password, for instance), each kept
current by a watch filtered to its name while someone names it, so that a
change reaches everyone who uses it at once, and nothing else is watched.

Each watch holds a connection to the API server and a task for as long as
the name is in use, and a tenant chooses the names: `WatchQuota` bounds how
many one namespace can make the operator open."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mtls_operator.api.paths import secrets_path
from mtls_operator.api.secret_data import decode_data
from mtls_operator.runtime.kube import Kube, Object, ObjectKey
from mtls_operator.runtime.reflector import Reflector

User = TypeVar("User", bound=Hashable)

# How long a reader waits for the first read of a Secret just come into use.
FIRST_READ_TIMEOUT = 10.0
# Keystore password Secrets watched at once for the certificates of one namespace.
PASSWORD_SECRETS_PER_NAMESPACE = 8


class WatchQuota(Generic[User]):
    """At most `limit` names watched at once in each namespace. Whoever is
    refused waits: when a name is freed in its namespace, it is woken to ask
    again (and the first to ask gets it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._watched: Counter[str] = Counter()
        self._waiting: dict[str, set[User]] = {}
        self._waiting_in: dict[User, str] = {}

    def take(self, namespace: str, user: User) -> bool:
        """One more name watched in `namespace` for `user`, if the quota allows."""
        self.forget(user)
        if self._watched[namespace] >= self.limit:
            self._waiting.setdefault(namespace, set()).add(user)
            self._waiting_in[user] = namespace
            return False
        self._watched[namespace] += 1
        return True

    def give_back(self, namespace: str) -> set[User]:
        """A name of `namespace` is no longer watched: who to wake."""
        self._watched[namespace] -= 1
        if self._watched[namespace] <= 0:
            del self._watched[namespace]
        woken = self._waiting.pop(namespace, set())
        for user in woken:
            del self._waiting_in[user]
        return woken

    def forget(self, user: User) -> None:
        """`user` waits no more (it is gone, or names something else)."""
        namespace = self._waiting_in.pop(user, None)
        if namespace is not None:
            waiting = self._waiting[namespace]
            waiting.discard(user)
            if not waiting:
                del self._waiting[namespace]

    def refusal(self, namespace: str, what: str) -> str:
        return (
            f"namespace {namespace} already has {self.limit} {what} in use, "
            "the most the operator watches for one namespace"
        )


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
    (namespace, name) is created, changed or deleted, and when a name `user`
    was refused (over `per_namespace`) may be watched after all."""

    def __init__(self, kube: Kube, notify: Callable[[User], None], *, per_namespace: int) -> None:
        self._kube = kube
        self._notify = notify
        self._watched: dict[ObjectKey, _Watched[User]] = {}
        self._used: dict[User, ObjectKey] = {}
        self.quota = WatchQuota[User](per_namespace)

    def use(self, secret: ObjectKey, user: User) -> bool:
        """False: `secret` would be one more watch than its namespace may
        have; `user` uses none (and is notified when one is freed)."""
        if self._used.get(user) == secret:
            return True
        self.release(user)  # what it used before may free the slot it needs
        watched = self._watched.get(secret)
        if watched is None:
            if not self.quota.take(secret[0], user):
                return False
            watched = self._watched[secret] = _Watched[User]()
            watched.task = asyncio.create_task(self._watch(secret, watched))
        self._used[user] = secret
        watched.users.add(user)
        return True

    def release(self, user: User) -> None:
        self.quota.forget(user)
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
            for waiting in self.quota.give_back(secret[0]):
                self._notify(waiting)

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
