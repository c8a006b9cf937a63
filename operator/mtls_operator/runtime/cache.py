"""One cache of the cluster that every controller reads, in the manner of
client-go's shared informers: one reflector per kind and scope, whatever
the number of controllers that need it; each object kept once, in the form
its readers need (`transform`, decoded once as it arrives); indexes
declared by name; and any number of subscribers told of each change, which
queue keys on their own lanes. A re-list tells them of what it no longer
holds, as if it had been deleted.

Most informers are kept for the operator's life. Those of one object by
name (a CA Secret, a passphrase or keystore password Secret) are opened for
a use and closed when their last user lets go (`SharedCache.named`)."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mtls_operator.runtime.clock import SYSTEM_CLOCK, Clock
from mtls_operator.runtime.kube import Kube, Object, ObjectKey, object_key
from mtls_operator.runtime.reflector import Reflector

T = TypeVar("T")

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


def newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` is newer than `current`. They are
    opaque strings in general but etcd revisions in practice; when they do
    not compare as numbers, the candidate wins."""
    try:
        return int(candidate) > int(current)
    except ValueError:
        return candidate != current


@dataclass(frozen=True)
class Change(Generic[T]):
    """What a subscriber hears: `old` is None for ADDED, `new` for DELETED.
    `ours`: the answer to one of the operator's own writes (`wrote`)."""

    type: str
    key: ObjectKey
    old: T | None
    new: T | None
    ours: bool = False

    @property
    def latest(self) -> T:
        """The object as it is now, or as it was when it was deleted."""
        found = self.new if self.new is not None else self.old
        if found is None:
            raise ValueError(f"a change of {self.key} without an object")
        return found


class Informer(Generic[T]):
    """The objects of one kind in one scope, as `transform` reads them, by
    (namespace, name). Fed by one reflector (a `PagedSink`)."""

    def __init__(
        self, transform: Callable[[Object], T], version_of: Callable[[T], str] | None = None
    ) -> None:
        self._transform = transform
        self._items: dict[ObjectKey, T] = {}
        # What each item was read from: an event of the same version is a
        # repeat (a re-list after a reconnect), and one of an older version
        # is late (the answer to our own write came first); neither tells
        # anyone. Kept here unless the item itself holds it (`version_of`):
        # one string less per object, where objects are counted in ten
        # thousands.
        self._version_of = version_of
        self._versions: dict[ObjectKey, str] = {}
        self._index_functions: dict[str, Callable[[T], Iterable[Hashable]]] = {}
        self._indexes: dict[str, defaultdict[Hashable, set[ObjectKey]]] = {}
        self._subscribers: list[Callable[[Change[T]], None]] = []
        self._listed: set[ObjectKey] | None = None  # keys seen by the re-list under way
        self.reflector: Reflector | None = None

    # Reading

    def get(self, key: ObjectKey) -> T | None:
        return self._items.get(key)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(list(self._items))

    def items(self) -> list[tuple[ObjectKey, T]]:
        return list(self._items.items())

    def keys_by(self, index: str, value: Hashable) -> set[ObjectKey]:
        """The keys whose `index` function gave `value`."""
        return set(self._indexes[index].get(value, ()))

    async def synced(self) -> None:
        """Once the first list is in (or the resource is not served)."""
        if self.reflector is not None:
            await self.reflector.synced.wait()

    @property
    def listed(self) -> bool:
        """The first list is in."""
        return self.reflector is None or self.reflector.synced.is_set()

    @property
    def absent(self) -> bool:
        """The API server does not serve this kind (its API is not enabled)."""
        return self.reflector is not None and self.reflector.absent

    # Our own writes, known before their watch events come

    def wrote(self, obj: Object, item: T | None = None) -> T | None:
        """What the API server answered to one of our writes: kept at once, so
        that what is decided before its watch event comes sees it. The event,
        of the same version, then tells no one again. `item`: `obj` as
        `transform` would read it, when the writer knows it already. Returns
        what is held now, or None if something newer was."""
        return self._put(object_key(obj), obj, item, ours=True)

    def learned(self, obj: Object) -> T | None:
        """An object read outside the watch (a GET): kept, and told, as a
        watch event would be, unless something newer is held."""
        return self._put(object_key(obj), obj)

    def amend(self, key: ObjectKey, change: Callable[[T], T]) -> None:
        """What is held of `key`, changed in place without telling anyone: for
        what the operator wrote of an object that its watch will deliver
        whole (its status), when the answer may carry parts that must still
        come through the watch (a newer spec)."""
        held = self._items.get(key)
        if held is None:
            return
        amended = change(held)
        self._items[key] = amended
        self._reindex(key, held, amended)

    def removed(self, key: ObjectKey) -> None:
        """Deleted by us: gone at once; its watch event then finds nothing."""
        self._delete(key)

    # Declaring

    def add_index(self, name: str, values: Callable[[T], Iterable[Hashable]]) -> None:
        """Declared once per name: asked again, the first declaration stays."""
        if name in self._index_functions:
            return
        self._index_functions[name] = values
        index = self._indexes[name] = defaultdict(set)
        for key, item in self._items.items():
            for value in values(item):
                index[value].add(key)

    def subscribe(self, handler: Callable[[Change[T]], None], *, replay: bool = True) -> None:
        """`handler` hears every change from now on, and first (`replay`) an
        ADDED for each object already held, so that late subscribers miss
        nothing."""
        self._subscribers.append(handler)
        for key, item in list(self._items.items()) if replay else ():
            handler(Change(ADDED, key, None, item))

    def unsubscribe(self, handler: Callable[[Change[T]], None]) -> None:
        self._subscribers.remove(handler)

    # Fed by the reflector

    def apply(self, event_type: str, obj: Object) -> None:
        key = object_key(obj)
        if event_type != DELETED:
            self._put(key, obj)
            return
        version = _version(obj)
        held = self._held_version(key)
        if version and held and held != version and not newer(version, held):
            return  # the deletion of an earlier incarnation: its successor is held
        self._delete(key)

    def begin_relist(self) -> None:
        self._listed = set()

    def add_page(self, items: list[Object]) -> None:
        for obj in items:
            key = object_key(obj)
            if self._listed is not None:
                self._listed.add(key)
            self._put(key, obj)

    def end_relist(self, resource_version: str) -> None:
        """What the list left out is gone, unless what is held of it is
        newer than the list: written after the list's snapshot (our own
        write, answered while the list was read out), it still exists, or
        its deletion comes through the watch that starts from the list."""
        listed, self._listed = self._listed or set(), None
        for key in [key for key in self._items if key not in listed]:
            held = self._held_version(key)
            if resource_version and held and newer(held, resource_version):
                continue
            self._delete(key)

    def replace(self, items: list[Object], resource_version: str = "") -> None:
        """A whole list in one page."""
        self.begin_relist()
        self.add_page(items)
        self.end_relist(resource_version)

    def _put(
        self, key: ObjectKey, obj: Object, item: T | None = None, *, ours: bool = False
    ) -> T | None:
        version = _version(obj)
        held = self._held_version(key)
        if version and held and not newer(version, held):
            return None
        old = self._items.get(key)
        new = self._transform(obj) if item is None else item
        self._items[key] = new
        if self._version_of is None:
            self._versions[key] = version
        self._reindex(key, old, new)
        self._tell(Change(ADDED if old is None else MODIFIED, key, old, new, ours))
        return new

    def _held_version(self, key: ObjectKey) -> str:
        if self._version_of is None:
            return self._versions.get(key, "")
        held = self._items.get(key)
        return self._version_of(held) if held is not None else ""

    def _delete(self, key: ObjectKey) -> None:
        old = self._items.pop(key, None)
        self._versions.pop(key, None)
        if old is None:
            return
        self._reindex(key, old, None)
        self._tell(Change(DELETED, key, old, None))

    def _reindex(self, key: ObjectKey, old: T | None, new: T | None) -> None:
        """`key` moves from the index values of `old` to those of `new`. A
        value both give is left alone: its set keeps the key it holds, the
        one `_items` holds too, rather than the equal tuple of each event,
        so that every object is kept under one key however often it
        changes."""
        for name, values in self._index_functions.items():
            index = self._indexes[name]
            before = set(values(old)) if old is not None else set()
            after = set(values(new)) if new is not None else set()
            for value in before - after:
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
            for value in after - before:
                index[value].add(key)

    def _tell(self, change: Change[T]) -> None:
        for handler in self._subscribers:
            handler(change)


def _version(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


# Runs a reflector (named, for the logs) and returns what stops it.
Watch = Callable[[Reflector, str], Callable[[], None]]


@dataclass(frozen=True)
class _Scope:
    path: str
    params: tuple[tuple[str, str], ...]
    metadata_only: bool


@dataclass
class _Kept:
    """An informer, its reflector, and the transform it keeps its kind in."""

    transform: Callable[[Object], Any]
    informer: Informer[Any]
    reflector: Reflector
    version_of: Callable[[Any], str] | None = None
    absent_is_empty: bool = False
    # Opened by `named`: how many uses it has, and what stops its reflector.
    # None: kept for the operator's life.
    uses: int | None = None
    stop: Callable[[], None] | None = None


class Use(Generic[T]):
    """One use of the informer of one object by name (`SharedCache.named`),
    until it is released."""

    def __init__(self, informer: Informer[T], release: Callable[[], None]) -> None:
        self.informer = informer
        self._release = release
        self._handlers: list[Callable[[Change[T]], None]] = []
        self._released = False

    def get(self) -> T | None:
        """The object, if it exists (its informer holds nothing else)."""
        held = self.informer.items()
        return held[0][1] if held else None

    async def synced(self) -> None:
        await self.informer.synced()

    @property
    def last_error(self) -> str | None:
        """Why it has not been listed, if a list failed."""
        return self.informer.reflector.last_error if self.informer.reflector else None

    def subscribe(self, handler: Callable[[Change[T]], None]) -> None:
        """`handler` hears the object's changes after its first list (what
        that list found, `get` reads once `synced`), until the release."""

        def after_the_first_list(change: Change[T]) -> None:
            if self.informer.listed:
                handler(change)

        self._handlers.append(after_the_first_list)
        self.informer.subscribe(after_the_first_list, replay=False)

    def release(self) -> None:
        """This use is over (released again: nothing more). Its handlers
        hear no more, and the last use of an informer stops its reflector."""
        if self._released:
            return
        self._released = True
        for handler in self._handlers:
            self.informer.unsubscribe(handler)
        self._release()


class SharedCache:
    """The informers of one operator, one per kind and scope (API path and
    selectors). Informers are declared when controllers are made, and their
    reflectors run from `start` (or at once, when declared later) for as
    long as the operator runs (`watch`, the runtime's); those of one object
    by name from their first use to their last (`named`)."""

    def __init__(self, kube: Kube, watch: Watch, clock: Clock = SYSTEM_CLOCK) -> None:
        self._kube = kube
        self._watch = watch
        self._clock = clock  # the reflectors' back-off waits on it
        self._informers: dict[_Scope, _Kept] = {}
        self._waiting: list[tuple[Reflector, str]] = []  # declared before `start`
        self._started = False

    def start(self) -> None:
        self._started = True
        for reflector, name in self._waiting:
            self._watch(reflector, name)
        self._waiting.clear()

    def informer(
        self,
        name: str,
        path: str,
        transform: Callable[[Object], T],
        params: Mapping[str, str] | None = None,
        *,
        absent_is_empty: bool = False,
        metadata_only: bool = False,
        version_of: Callable[[T], str] | None = None,
    ) -> Informer[T]:
        """The informer of `path` with `params`, started on first request;
        asked for again, the same one (with the same `transform`: a kind is
        kept in one form, so that no object is decoded twice). `version_of`
        reads the resourceVersion back from a kept object that holds it."""
        scope = _Scope(path, tuple(sorted((params or {}).items())), metadata_only)
        kept = self._kept(scope, transform)
        if kept is not None:
            if (kept.version_of, kept.absent_is_empty) != (version_of, absent_is_empty):
                raise ValueError(
                    f"{scope.path} is already kept with another version_of or absent_is_empty"
                )
            kept.uses = None  # read for the operator's life from now on
        else:
            kept = self._new(
                scope, transform, params, absent_is_empty=absent_is_empty, version_of=version_of
            )
            if self._started:
                self._watch(kept.reflector, name)
            else:
                self._waiting.append((kept.reflector, name))
        informer: Informer[T] = kept.informer
        return informer

    def named(self, path: str, name: str, transform: Callable[[Object], T]) -> Use[T]:
        """One more use of the informer of the object `name` in collection
        `path`, listed and watched (through a field selector on the name) at
        once. Once its last use is released, its reflector stops and it is
        forgotten: asked for again, it is made anew, and lists again."""
        params = {"fieldSelector": f"metadata.name={name}"}
        scope = _Scope(path, tuple(params.items()), metadata_only=False)
        kept = self._kept(scope, transform)
        if kept is None:
            kept = self._new(scope, transform, params)
            kept.uses = 0
            kept.stop = self._watch(kept.reflector, f"{path}/{name}")
        if kept.uses is not None:
            kept.uses += 1
        return Use(kept.informer, functools.partial(self._release, scope, kept))

    def _kept(self, scope: _Scope, transform: Callable[[Object], Any]) -> _Kept | None:
        found = self._informers.get(scope)
        if found is not None and found.transform is not transform:
            raise ValueError(f"{scope.path} is already kept in another form ({found.transform!r})")
        return found

    def _new(
        self,
        scope: _Scope,
        transform: Callable[[Object], Any],
        params: Mapping[str, str] | None,
        *,
        absent_is_empty: bool = False,
        version_of: Callable[[Any], str] | None = None,
    ) -> _Kept:
        informer: Informer[Any] = Informer(transform, version_of)
        informer.reflector = Reflector(
            self._kube,
            scope.path,
            informer,
            params,
            absent_is_empty=absent_is_empty,
            metadata_only=scope.metadata_only,
            clock=self._clock,
        )
        kept = self._informers[scope] = _Kept(
            transform, informer, informer.reflector, version_of, absent_is_empty
        )
        return kept

    def _release(self, scope: _Scope, kept: _Kept) -> None:
        if kept.uses is None:
            return  # read for the operator's life since
        kept.uses -= 1
        if kept.uses == 0:
            del self._informers[scope]
            if kept.stop is not None:
                kept.stop()

    def group(
        self,
        name: str,
        path: Callable[[str | None], str],
        transform: Callable[[Object], T],
        namespaces: tuple[str, ...],
        params: Mapping[str, str] | None = None,
        *,
        metadata_only: bool = False,
        version_of: Callable[[T], str] | None = None,
    ) -> InformerGroup[T]:
        """The informers of one kind in each of `namespaces` (`path` of
        each), or one of every namespace when none are given, read as one."""
        return InformerGroup(
            {
                namespace: self.informer(
                    f"{name}-{namespace or 'all'}",
                    path(namespace),
                    transform,
                    params,
                    metadata_only=metadata_only,
                    version_of=version_of,
                )
                for namespace in namespaces or (None,)
            }
        )

    def paths(self) -> set[str]:
        """The API paths of the informers declared (what will be listed and watched)."""
        return {scope.path for scope in self._informers}


class InformerGroup(Generic[T]):
    """The informers of one kind in several namespaces (or one informer of
    all of them), read as one: each key goes to its namespace's informer."""

    def __init__(self, informers: Mapping[str | None, Informer[T]]) -> None:
        self._informers = dict(informers)
        self._everywhere = self._informers.get(None)

    def of(self, namespace: str) -> Informer[T] | None:
        if self._everywhere is not None:  # not `or`: an empty informer is falsy
            return self._everywhere
        return self._informers.get(namespace)

    def get(self, key: ObjectKey) -> T | None:
        informer = self.of(key[0])
        return informer.get(key) if informer is not None else None

    def __len__(self) -> int:
        return sum(len(informer) for informer in self._informers.values())

    def __iter__(self) -> Iterator[ObjectKey]:
        for informer in self._informers.values():
            yield from informer

    def keys_by(self, index: str, value: Hashable) -> set[ObjectKey]:
        return set().union(*(i.keys_by(index, value) for i in self._informers.values()))

    def add_index(self, name: str, values: Callable[[T], Iterable[Hashable]]) -> None:
        for informer in self._informers.values():
            informer.add_index(name, values)

    def subscribe(self, handler: Callable[[Change[T]], None]) -> None:
        for informer in self._informers.values():
            informer.subscribe(handler)

    def wrote(self, obj: Object, item: T | None = None) -> T | None:
        informer = self.of(object_key(obj)[0])
        return informer.wrote(obj, item) if informer is not None else None

    def learned(self, obj: Object) -> T | None:
        informer = self.of(object_key(obj)[0])
        return informer.learned(obj) if informer is not None else None

    def removed(self, key: ObjectKey) -> None:
        informer = self.of(key[0])
        if informer is not None:
            informer.removed(key)

    async def synced(self) -> None:
        await asyncio.gather(*(informer.synced() for informer in self._informers.values()))
