"""Secrets with the name a certificate wants that the operator does not
manage. They are not watched (only managed Secrets are, by label), so each
is remembered here once seen, and read again at the certificate's next look."""

from __future__ import annotations

from mtls_operator.api.managed_secret import SecretFacts, read_secret
from mtls_operator.api.paths import secrets_path
from mtls_operator.certificates.store import Store
from mtls_operator.runtime.kube import Kube, ObjectKey


class ForeignSecrets:
    def __init__(self, kube: Kube, store: Store) -> None:
        self._kube = kube
        self._store = store
        self._seen: dict[ObjectKey, SecretFacts] = {}

    async def refresh(self, namespace: str, name: str) -> None:
        """Read a Secret after a write conflict. Only managed Secrets enter
        the store (it mirrors the label-selected watch); another Secret of
        that name is remembered here."""
        key = (namespace, name)
        body = await self._kube.get(secrets_path(namespace, name))
        if body is None:
            self._store.secrets.removed(key)
            self._seen.pop(key, None)
            return
        facts = read_secret(body)
        if facts.managed:
            self._seen.pop(key, None)
            self._store.secrets.learned(body)
        else:
            self._seen[key] = facts

    async def current(self, namespace: str, name: str) -> SecretFacts | None:
        """The Secret of that name if it was foreign when last seen: read again."""
        key = (namespace, name)
        if key not in self._seen:
            return None
        await self.refresh(namespace, name)
        return self._store.secrets.get(key) or self._seen.get(key)
