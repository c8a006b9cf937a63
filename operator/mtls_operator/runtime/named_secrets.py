"""Secrets that objects name (a CA, its passphrase, a keystore password),
each kept current by the shared cache's informer of that one name while
someone names it (`watch_secret`), so that a change reaches everyone who
uses it at once, and nothing else is watched. Every user of a name reads it
in one form (`NamedSecret`): the CA store and the keystore passwords share
the watch of a Secret both name.

Each watch holds a connection to the API server and a task for as long as
the name is in use, and a tenant chooses the names: `WatchQuota` bounds how
many one namespace can make the operator open."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from mtls_operator.api.paths import secrets_path
from mtls_operator.api.secret_data import decode_data
from mtls_operator.runtime.cache import Change, SharedCache, Use
from mtls_operator.runtime.kube import Object, ObjectKey

User = TypeVar("User", bound=Hashable)
Key = TypeVar("Key", bound=Hashable)

# How long a reader waits for the first read of a Secret just come into use.
FIRST_READ_TIMEOUT = 10.0
# Keystore password Secrets watched at once for the certificates of one namespace.
PASSWORD_SECRETS_PER_NAMESPACE = 8


@dataclass(frozen=True)
class NamedSecret:
    """What is kept of a Secret watched by name."""

    annotations: Mapping[str, str]
    data: Mapping[str, bytes] = field(repr=False)


def named_secret(obj: Object) -> NamedSecret:
    metadata = obj.get("metadata") or {}
    return NamedSecret(dict(metadata.get("annotations") or {}), decode_data(obj.get("data")))


def watch_secret(cache: SharedCache, secret: ObjectKey) -> Use[NamedSecret]:
    """One more use of the watch of `secret` (namespace, name)."""
    namespace, name = secret
    return cache.named(secrets_path(namespace), name, named_secret)


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


class _Used(Protocol):
    """What is watched for as long as anyone uses it."""

    users: set[Any]


Used = TypeVar("Used", bound=_Used)


def last_use(
    used: dict[User, Key], entries: dict[Key, Used], user: User
) -> tuple[Key, Used] | None:
    """`user` uses nothing any more: what it used, taken out of `entries`
    when nobody else uses it (its watch is to stop); None while others do."""
    key = used.pop(user, None)
    if key is None or key not in entries:
        return None
    entry = entries[key]
    entry.users.discard(user)
    if entry.users:
        return None
    del entries[key]
    return key, entry


@dataclass
class _Watched(Generic[User]):
    secret: Use[NamedSecret]
    users: set[User] = field(default_factory=set)


class NamedSecrets(Generic[User]):
    """`use(secret, user)`: `notify(user)` is called whenever the data of
    `secret` (namespace, name) is created, changed or deleted, and when a
    name `user` was refused (over `per_namespace`) may be watched after all."""

    def __init__(
        self, cache: SharedCache, notify: Callable[[User], None], *, per_namespace: int
    ) -> None:
        self._cache = cache
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
            watched = self._watched[secret] = _Watched[User](watch_secret(self._cache, secret))
            watched.secret.subscribe(functools.partial(self._changed, watched))
        self._used[user] = secret
        watched.users.add(user)
        return True

    def release(self, user: User) -> None:
        self.quota.forget(user)
        unused = last_use(self._used, self._watched, user)
        if unused is not None:
            secret, watched = unused
            watched.secret.release()
            for waiting in self.quota.give_back(secret[0]):
                self._notify(waiting)

    async def data(self, secret: ObjectKey) -> Mapping[str, bytes] | None:
        """The Secret's data as last seen (None: it does not exist, or is not
        in use); waits for the first read of a Secret just come into use."""
        watched = self._watched.get(secret)
        if watched is None:
            return None
        try:
            await asyncio.wait_for(watched.secret.synced(), timeout=FIRST_READ_TIMEOUT)
        except TimeoutError:
            return None  # its watch keeps trying, and tells the users when it has read it
        found = watched.secret.get()
        return found.data if found is not None else None

    async def close(self) -> None:
        for watched in self._watched.values():
            watched.secret.release()
        self._watched.clear()
        self._used.clear()

    def _changed(self, watched: _Watched[User], change: Change[NamedSecret]) -> None:
        if _data(change.old) != _data(change.new):
            for user in list(watched.users):
                self._notify(user)


def _data(secret: NamedSecret | None) -> Mapping[str, bytes] | None:
    return secret.data if secret is not None else None
