"""The CA key a CA Secret held when it was last read, and how opening it
went: a CA read again for another reason (a label, a new trust bundle, an
edit of the passphrase Secret's metadata) does not pay again to open an
unchanged key (whose cost its writer chose), nor to fail at it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from mtls_operator.pki.errors import KeyLoadError

_Key = TypeVar("_Key")


@dataclass(frozen=True)
class _Opened(Generic[_Key]):
    digest: bytes
    key: _Key | None
    failure: str


class DecryptedKeys(Generic[_Key]):
    """The last key opened and how it went, by a digest of its PEM and
    passphrase. Called from worker threads: one opens a key while another
    that wants the same waits for what it found, rather than opening it too."""

    def __init__(self, load: Callable[[bytes, bytes | None], _Key]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._last: _Opened[_Key] | None = None

    def load(self, pem: bytes, passphrase: bytes | None) -> _Key:
        digest = _digest(pem, passphrase)
        with self._lock:
            last = self._last
            if last is None or last.digest != digest:
                try:
                    last = _Opened(digest, self._load(pem, passphrase), "")
                except KeyLoadError as err:
                    last = _Opened(digest, None, str(err))
                self._last = last
        if last.key is None:
            raise KeyLoadError(last.failure)
        return last.key


def _digest(pem: bytes, passphrase: bytes | None) -> bytes:
    hashed = hashlib.sha256(len(pem).to_bytes(8, "big") + pem)
    hashed.update(b"\x00" if passphrase is None else b"\x01" + passphrase)
    return hashed.digest()
