"""The CAs that certificates are signed with, shared by every controller.

Each CA Secret in use is loaded once and kept current by its own watch (a
server-side name filter, never a watch of all Secrets), and so is the
passphrase Secret it names. The store knows who uses which CA: a CA is
watched while someone uses it, and everyone using it is told when it changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.api.secret_data import decode_data
from mtls_operator.authorities.layouts import (
    PASSPHRASE_ANNOTATION,
    ca_from_secret_data,
    passphrase_from_secret_data,
    passphrase_secret_name,
)
from mtls_operator.pki import CAError, CAProblem, CertificateAuthority
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube, Object, secrets_path
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.named_secrets import OneSecretSink
from mtls_operator.runtime.reflector import Reflector

logger = logging.getLogger(__name__)

# How long a user waits for a CA Secret to be read before it is retried
# later (the watch keeps trying in the meantime).
READ_TIMEOUT = 10.0


@dataclass(frozen=True, order=True)
class CARef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class CAMissing:
    message: str


@dataclass(frozen=True)
class CAUnusable:
    problem: CAProblem
    message: str


CAState = CertificateAuthority | CAMissing | CAUnusable
# Who uses a CA: a callback and the key it is called with on a change.
User = tuple[Callable[[Any], None], Hashable]


@dataclass
class _Entry:
    secret: Object | None = None
    passphrase_secret: Object | None = None
    state: CAState | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    secret_task: asyncio.Task[None] | None = None
    passphrase_task: asyncio.Task[None] | None = None
    watched_passphrase: str | None = None
    last_error: str | None = None
    users: set[User] = field(default_factory=set)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self.secret_task, self.passphrase_task) if t is not None]


class AuthorityStore:
    def __init__(self, kube: Kube, clock: Clock, metrics: Metrics) -> None:
        self._kube = kube
        self._clock = clock
        self._metrics = metrics
        self._entries: dict[CARef, _Entry] = {}
        self._used: dict[User, CARef] = {}
        # CAs whose trust bundle is published (as ClusterTrustBundles), and
        # the bundle published last: no leaf is signed by a CA whose roots
        # relying parties may not have yet.
        self._publishing: set[CARef] = set()
        self._published: dict[CARef, str] = {}

    def use(self, ref: CARef, notify: Callable[[Any], None], key: Hashable) -> None:
        """`notify(key)` uses the CA `ref` from now on (and no longer the CA
        it used before): it is called whenever that CA changes."""
        user = (notify, key)
        previous = self._used.get(user)
        if previous == ref:
            return
        self._used[user] = ref
        entry = self._entries.get(ref)
        if entry is None:
            entry = self._entries[ref] = _Entry()
            entry.secret_task = asyncio.create_task(
                self._watch(ref, ref.name, entry, passphrase=False)
            )
        entry.users.add(user)
        if previous is not None:
            self._drop_user(previous, user)

    def release(self, notify: Callable[[Any], None], key: Hashable) -> None:
        """`key` uses no CA any more (it was deleted)."""
        user = (notify, key)
        previous = self._used.pop(user, None)
        if previous is not None:
            self._drop_user(previous, user)

    def await_publication(self, ref: CARef) -> None:
        """Someone publishes `ref`'s trust bundle: until it has published the
        current one, `is_published` says no."""
        self._publishing.add(ref)

    def published(self, ref: CARef, trust_bundle_sha256: str) -> None:
        self._published[ref] = trust_bundle_sha256

    def is_published(self, ref: CARef, ca: CertificateAuthority) -> bool:
        if ref not in self._publishing:
            return True
        return self._published.get(ref) == ca.trust_bundle_sha256

    def users_of(self, ref: CARef) -> int:
        entry = self._entries.get(ref)
        return len(entry.users) if entry else 0

    async def state(self, ref: CARef) -> CAState:
        """The CA as its Secret holds it now; waits for the first read of a
        CA that has just come into use."""
        entry = self._entries.get(ref)
        if entry is None:
            return CAMissing(f"CA Secret {ref} is not in use")
        try:
            await asyncio.wait_for(entry.ready.wait(), timeout=READ_TIMEOUT)
        except TimeoutError:
            # Its watch keeps trying; the user is retried with backoff.
            return CAMissing(
                f"CA Secret {ref} could not be read yet ({entry.last_error or 'no answer'})"
            )
        state = entry.state or CAMissing(f"CA Secret {ref} has not been read yet")
        if isinstance(state, CAUnusable) and state.problem is CAProblem.NOT_YET_VALID:
            # Validity depends on the time, not only on the Secret: look again.
            state = self._set_state(ref, entry, self._load(ref, entry))
        return state

    async def close(self) -> None:
        tasks = [t for e in self._entries.values() for t in e.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop_user(self, ref: CARef, user: User) -> None:
        entry = self._entries.get(ref)
        if entry is None:
            return
        entry.users.discard(user)
        if not entry.users:
            # Nobody uses that CA any more: stop watching it.
            del self._entries[ref]
            for task in entry.tasks:
                task.cancel()
            self._metrics.set_ca(ref.namespace, ref.name, None)

    async def _watch(self, ref: CARef, name: str, entry: _Entry, *, passphrase: bool) -> None:
        def update(obj: Object | None) -> None:
            if not passphrase:
                entry.secret = obj
            elif name == entry.watched_passphrase:
                entry.passphrase_secret = obj
            else:
                return  # a passphrase Secret the CA Secret no longer names
            self._reload(ref, entry)

        def failed(message: str) -> None:
            entry.last_error = message

        reflector = Reflector(
            self._kube,
            secrets_path(ref.namespace),
            OneSecretSink(update),
            {"fieldSelector": f"metadata.name={name}"},
            on_error=failed,
        )
        await reflector.run()

    def _reload(self, ref: CARef, entry: _Entry) -> None:
        wanted = passphrase_secret_name(_annotations(entry.secret))
        if wanted != entry.watched_passphrase:
            # The passphrase Secret is only known once the CA Secret is read;
            # its own watch calls back here when it has listed it.
            entry.watched_passphrase = wanted
            entry.passphrase_secret = None
            if entry.passphrase_task is not None:
                entry.passphrase_task.cancel()
                entry.passphrase_task = None
            if wanted:
                entry.passphrase_task = asyncio.create_task(
                    self._watch(ref, wanted, entry, passphrase=True)
                )
                return
        previous = entry.state
        self._set_state(ref, entry, self._load(ref, entry))
        entry.ready.set()
        if (
            previous is not None
            and entry.state is not None
            and not _same_state(previous, entry.state)
        ):
            logger.info("CA %s changed: %s", ref, _describe(entry.state))
            for notify, key in list(entry.users):
                notify(key)

    def _set_state(self, ref: CARef, entry: _Entry, state: CAState) -> CAState:
        entry.state = state
        not_after = state.not_after.timestamp() if isinstance(state, CertificateAuthority) else None
        self._metrics.set_ca(ref.namespace, ref.name, not_after)
        return state

    def _load(self, ref: CARef, entry: _Entry) -> CAState:
        if entry.secret is None:
            return CAMissing(f"CA Secret {ref} does not exist")
        passphrase = None
        wanted = passphrase_secret_name(_annotations(entry.secret))
        if wanted:
            if entry.passphrase_secret is None:
                return CAUnusable(
                    CAProblem.KEY_UNREADABLE,
                    f"CA Secret {ref}: passphrase Secret {ref.namespace}/{wanted} "
                    f"(annotation {PASSPHRASE_ANNOTATION}) does not exist",
                )
            try:
                passphrase = passphrase_from_secret_data(
                    decode_data(entry.passphrase_secret.get("data"))
                )
            except CAError as err:
                return CAUnusable(err.problem, f"CA Secret {ref}: {err}")
        try:
            return ca_from_secret_data(
                decode_data(entry.secret.get("data")), self._clock.now(), passphrase
            )
        except CAError as err:
            return CAUnusable(err.problem, f"CA Secret {ref}: {err}")


def _annotations(secret: Object | None) -> dict[str, Any]:
    return dict(((secret or {}).get("metadata") or {}).get("annotations") or {})


def _same_state(a: CAState, b: CAState) -> bool:
    if isinstance(a, CertificateAuthority) and isinstance(b, CertificateAuthority):
        return a.fingerprint == b.fingerprint and a.trust_bundle_pem == b.trust_bundle_pem
    return a == b


def _describe(state: CAState) -> str:
    if isinstance(state, CertificateAuthority):
        return f"signing with {state.subject!r}"
    return state.message
