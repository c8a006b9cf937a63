"""The CAs that certificates are signed with, shared by every controller.

Each CA Secret in use is loaded once and kept current by the shared
cache's informer of its name (a server-side name filter, never a watch of
all Secrets, `runtime.named_secrets`), and so is the passphrase Secret it
names. The store knows who uses which CA: a CA is watched while someone
uses it, and everyone using it is told when it changes.

Whoever writes a CA Secret chooses what reading it costs (an encrypted key's
derivation, bounded in `pki.encrypted_keys`): CAs are read in worker
threads of their own, tenants' in turns by namespace (`authorities.reads`),
a CA whose Secrets keep changing is read at most once per
CA_REREAD_INTERVAL, and an unchanged key and passphrase are not opened
again.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.authorities.decrypted_keys import DecryptedKeys
from mtls_operator.authorities.layouts import (
    PASSPHRASE_ANNOTATION,
    ca_from_secret_data,
    passphrase_from_secret_data,
    passphrase_secret_name,
)
from mtls_operator.authorities.reads import OWN, CAReads
from mtls_operator.pki import CAError, CAProblem, CertificateAuthority, PrivateKey, load_private_key
from mtls_operator.pki.ca import KeyLoader
from mtls_operator.runtime.cache import SharedCache, Use
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.named_secrets import NamedSecret, WatchQuota, last_use, watch_secret

logger = logging.getLogger(__name__)

# How long a user waits for a CA Secret to be read before it is retried
# later (the watch keeps trying in the meantime).
READ_TIMEOUT = 10.0
# Reading a CA may take half a second of a core (see pki.encrypted_keys):
# a CA whose Secrets are edited again and again is read once per this many
# seconds, however often they change.
CA_REREAD_INTERVAL = 2.0
# The CA Secrets certificates of one namespace may name at once (caSecretName);
# each is one watch, and one more for the passphrase Secret it names.
CA_SECRETS_PER_NAMESPACE = 8


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
    keys: DecryptedKeys[PrivateKey]  # the CA key last opened, and how it went
    secret: Use[NamedSecret]  # the CA Secret's watch
    # The passphrase Secret the CA Secret named when it was last read, and its watch.
    passphrase_name: str | None = None
    passphrase: Use[NamedSecret] | None = None
    state: CAState | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    users: set[User] = field(default_factory=set)
    counted: bool = False  # one of its namespace's quota of tenant CAs
    # Reads the CA again while `changed` (set by every watch event).
    read_task: asyncio.Task[None] | None = None
    changed: bool = False
    read_after: float = 0.0  # the clock's monotonic time

    @property
    def watches(self) -> list[Use[NamedSecret]]:
        return [self.secret, *([self.passphrase] if self.passphrase is not None else [])]

    @property
    def last_error(self) -> str | None:
        return next((w.last_error for w in self.watches if w.last_error), None)


class AuthorityStore:
    def __init__(
        self,
        cache: SharedCache,
        clock: Clock,
        metrics: Metrics,
        *,
        load_key: KeyLoader = load_private_key,
    ) -> None:
        """`load_key(pem, passphrase)` reads CA keys (tests count its calls)."""
        self._cache = cache
        self._load_key = load_key
        self._clock = clock
        self._metrics = metrics
        self._entries: dict[CARef, _Entry] = {}
        self._used: dict[User, CARef] = {}
        # CAs whose trust bundle is published (as ClusterTrustBundles), and
        # the bundle published last: no leaf is signed by a CA whose roots
        # relying parties may not have yet.
        self._publishing: set[CARef] = set()
        self._published: dict[CARef, str] = {}
        self._reads = CAReads()
        # Tenants' own CAs (those certificates name): watched in a bounded number.
        self._quota = WatchQuota[User](CA_SECRETS_PER_NAMESPACE)

    def use(
        self, ref: CARef, notify: Callable[[Any], None], key: Hashable, *, tenant: bool = False
    ) -> str | None:
        """`notify(key)` uses the CA `ref` from now on (and no longer the CA
        it used before): it is called whenever that CA changes. A `tenant`'s
        CA is one more watch only within its namespace's quota: over it, the
        reason why not (`notify(key)` is called when one is freed)."""
        user = (notify, key)
        if self._used.get(user) == ref:
            return None
        self.release(notify, key)  # what it used before may free the slot it needs
        entry = self._entries.get(ref)
        if entry is None:
            if tenant and not self._quota.take(ref.namespace, user):
                return self._quota.refusal(ref.namespace, "CA Secrets")
            entry = self._open(ref, counted=tenant)
        self._used[user] = ref
        entry.users.add(user)
        return None

    def release(self, notify: Callable[[Any], None], key: Hashable) -> None:
        """`key` uses no CA any more (it was deleted)."""
        user = (notify, key)
        self._quota.forget(user)
        unused = last_use(self._used, self._entries, user)
        if unused is None:
            return
        # Nobody uses that CA any more: stop watching it.
        ref, entry = unused
        _stop(entry)
        self._metrics.set_ca(ref.namespace, ref.name, None)
        if entry.counted:
            for waiting, waiting_key in self._quota.give_back(ref.namespace):
                waiting(waiting_key)

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

    async def state(self, ref: CARef) -> CAState:
        """The CA as its Secret holds it now; waits for the first read of a
        CA that has just come into use, and for the read of a change."""
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
        reading = entry.read_task
        if reading is not None and not reading.done():
            # A change of its Secrets is being read (or waits for its turn): never hand out
            # a CA the Secret no longer holds.
            done, _ = await asyncio.wait({reading}, timeout=READ_TIMEOUT)
            if not done:
                return CAMissing(f"CA Secret {ref} changes faster than it is read")
        state = entry.state or CAMissing(f"CA Secret {ref} has not been read yet")
        if isinstance(state, CAUnusable) and state.problem is CAProblem.NOT_YET_VALID:
            # Validity depends on the time, not only on the Secret: look again.
            state = self._set_state(ref, entry, await self._load(ref, entry))
        return state

    async def close(self) -> None:
        tasks = [e.read_task for e in self._entries.values() if e.read_task is not None]
        for entry in self._entries.values():
            _stop(entry)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reads.close()

    def _open(self, ref: CARef, *, counted: bool) -> _Entry:
        """Watch the CA Secret `ref`, and read it once it is listed."""
        secret = watch_secret(self._cache, ref.key)
        entry = self._entries[ref] = _Entry(DecryptedKeys(self._load_key), secret, counted=counted)
        secret.subscribe(lambda _: self._reload(ref, entry))
        self._reload(ref, entry)
        return entry

    def _reload(self, ref: CARef, entry: _Entry) -> None:
        entry.changed = True
        if entry.read_task is None or entry.read_task.done():
            entry.read_task = asyncio.create_task(self._read(ref, entry), name=f"read-ca-{ref}")

    async def _read(self, ref: CARef, entry: _Entry) -> None:
        """Read the CA until it has not changed since the last read began:
        watch events that come meanwhile are one more read, not one each."""
        while entry.changed:
            wait = entry.read_after - self._clock.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._listed(ref, entry)
            entry.read_after = self._clock.monotonic() + CA_REREAD_INTERVAL
            entry.changed = False
            previous = entry.state
            state = self._set_state(ref, entry, await self._load(ref, entry))
            entry.ready.set()
            if previous is not None and not _same_state(previous, state):
                logger.info("CA %s changed: %s", ref, _describe(state))
                for notify, key in list(entry.users):
                    notify(key)

    async def _listed(self, ref: CARef, entry: _Entry) -> None:
        """Once the CA Secret is listed, and the passphrase Secret it names
        now (known only once the CA Secret is read; watched from then on)."""
        await entry.secret.synced()
        while (wanted := _passphrase_name(entry.secret.get())) != entry.passphrase_name:
            if entry.passphrase is not None:
                entry.passphrase.release()
            entry.passphrase_name, entry.passphrase = wanted, None
            if wanted:
                passphrase = entry.passphrase = watch_secret(self._cache, (ref.namespace, wanted))
                passphrase.subscribe(lambda _: self._reload(ref, entry))
                await passphrase.synced()

    def _set_state(self, ref: CARef, entry: _Entry, state: CAState) -> CAState:
        entry.state = state
        not_after = state.not_after.timestamp() if isinstance(state, CertificateAuthority) else None
        self._metrics.set_ca(ref.namespace, ref.name, not_after)
        return state

    async def _load(self, ref: CARef, entry: _Entry) -> CAState:
        found = self._contents(ref, entry)
        if not isinstance(found, tuple):
            return found
        data, passphrase = found
        read = functools.partial(_ca_state, ref, entry.keys, data, self._clock.now(), passphrase)
        try:
            return await self._reads.run(ref.namespace if entry.counted else OWN, read)
        except Exception as err:  # a CA that breaks the reader must not stop its watch
            logger.exception("reading CA Secret %s failed", ref)
            problem = f"CA Secret {ref} could not be read ({type(err).__name__})"
            return CAUnusable(CAProblem.INCOMPLETE, problem)

    def _contents(
        self, ref: CARef, entry: _Entry
    ) -> tuple[Mapping[str, bytes], bytes | None] | CAMissing | CAUnusable:
        """The CA Secret's data and the passphrase, or why there are none."""
        secret = entry.secret.get()
        if secret is None:
            return CAMissing(f"CA Secret {ref} does not exist")
        passphrase = None
        wanted = passphrase_secret_name(secret.annotations)
        if wanted:
            named = entry.passphrase if entry.passphrase_name == wanted else None
            found = named.get() if named is not None else None
            if found is None:
                return CAUnusable(
                    CAProblem.KEY_UNREADABLE,
                    f"CA Secret {ref}: passphrase Secret {ref.namespace}/{wanted} "
                    f"(annotation {PASSPHRASE_ANNOTATION}) does not exist",
                )
            try:
                passphrase = passphrase_from_secret_data(found.data)
            except CAError as err:
                return CAUnusable(err.problem, f"CA Secret {ref}: {err}")
        return secret.data, passphrase


def _ca_state(
    ref: CARef,
    keys: DecryptedKeys[PrivateKey],
    data: Mapping[str, bytes],
    now: datetime.datetime,
    passphrase: bytes | None,
) -> CAState:
    """In a worker thread: the key's derivation releases the interpreter lock."""
    try:
        return ca_from_secret_data(data, now, passphrase, load_key=keys.load)
    except CAError as err:
        return CAUnusable(err.problem, f"CA Secret {ref}: {err}")


def _stop(entry: _Entry) -> None:
    for watch in entry.watches:
        watch.release()
    if entry.read_task is not None:
        entry.read_task.cancel()


def _passphrase_name(secret: NamedSecret | None) -> str | None:
    return passphrase_secret_name(secret.annotations) if secret is not None else None


def _same_state(a: CAState, b: CAState) -> bool:
    if isinstance(a, CertificateAuthority) and isinstance(b, CertificateAuthority):
        return a.fingerprint == b.fingerprint and a.trust_bundle_pem == b.trust_bundle_pem
    return a == b


def _describe(state: CAState) -> str:
    if isinstance(state, CertificateAuthority):
        return f"signing with {state.subject!r}"
    return state.message
