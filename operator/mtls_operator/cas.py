"""The CAs certificates are signed with, loaded from their Secrets on first
use and kept current by one watch per CA Secret (a server-side name filter,
never a watch of all Secrets). A change is reported so that the
certificates signed by that CA are looked at again."""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.ca_secrets import (
    PASSPHRASE_ANNOTATION,
    ca_from_secret_data,
    passphrase_from_secret_data,
    passphrase_secret_name,
)
from mtls_operator.kube import Kube, Object, secrets_path
from mtls_operator.pki import CAError, CAProblem, CertificateAuthority
from mtls_operator.reflector import Reflector
from mtls_operator.secrets import decode_data

logger = logging.getLogger(__name__)

# How long a certificate waits for a CA Secret to be read before it is
# retried later (the watch keeps trying in the meantime).
READ_TIMEOUT = 10.0


@dataclass(frozen=True, order=True)
class CARef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class CAMissing:
    message: str


@dataclass(frozen=True)
class CAUnusable:
    problem: CAProblem
    message: str


CAState = CertificateAuthority | CAMissing | CAUnusable


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

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for t in (self.secret_task, self.passphrase_task) if t is not None]


class _SingleSecretSink:
    """Receives the events of a watch filtered to one Secret name."""

    def __init__(self, on_update: Callable[[Object | None], None]) -> None:
        self._on_update = on_update

    def replace(self, items: list[Object]) -> None:
        self._on_update(items[0] if items else None)

    def apply(self, event_type: str, obj: Object) -> None:
        self._on_update(None if event_type == "DELETED" else obj)


class CAStore:
    def __init__(
        self,
        kube: Kube,
        on_change: Callable[[CARef], None],
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._kube = kube
        self._on_change = on_change
        self._clock = clock
        self._entries: dict[CARef, _Entry] = {}

    async def get(self, ref: CARef) -> CAState:
        entry = self._entries.get(ref)
        if entry is None:
            entry = self._entries[ref] = _Entry()
            entry.secret_task = asyncio.create_task(
                self._watch(ref, ref.name, entry, passphrase=False)
            )
        try:
            await asyncio.wait_for(entry.ready.wait(), timeout=READ_TIMEOUT)
        except TimeoutError:
            # Its watch keeps trying; the certificate is retried with backoff.
            return CAMissing(
                f"CA Secret {ref} could not be read yet ({entry.last_error or 'no answer'})"
            )
        state = entry.state or CAMissing(f"CA Secret {ref} has not been read yet")
        if isinstance(state, CAUnusable) and state.problem is CAProblem.NOT_YET_VALID:
            # Validity depends on the time, not only on the Secret: look again.
            state = entry.state = self._load(ref, entry)
        return state

    def forget(self, ref: CARef) -> None:
        """Stop watching a CA no certificate uses any more."""
        entry = self._entries.pop(ref, None)
        if entry is not None:
            for task in entry.tasks:
                task.cancel()

    async def close(self) -> None:
        for entry in self._entries.values():
            for task in entry.tasks:
                task.cancel()
        await asyncio.gather(
            *(t for e in self._entries.values() for t in e.tasks), return_exceptions=True
        )

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
            _SingleSecretSink(update),
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
        entry.state = self._load(ref, entry)
        entry.ready.set()
        if previous is not None and not _same_state(previous, entry.state):
            logger.info("CA %s changed: %s", ref, _describe(entry.state))
            self._on_change(ref)

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
                decode_data(entry.secret.get("data")), self._clock(), passphrase
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
