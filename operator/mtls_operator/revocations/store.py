"""The revocations of every CA, shared by the controllers: the certificate
controller records what tenants ask for (and re-issues only once it is
recorded), the CRL controller signs what is recorded, and the trust-bundle
publisher copies the signed CRLs next to the roots. One informer of the
records' ConfigMaps (by label) feeds them all.

`add_revocations` is also what `mtls-operator revoke --serial` calls: the
operator and the command write an entry the same way.

Every write of the record rewrites it whole (its entries and its CRL), and
writes of one object do not run in parallel in the API server: revocations
asked for together are written in one patch (while one patch is on its way,
the next ones gather), so that a burst costs a few writes, not one each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL, MANAGER
from mtls_operator.api.revocations import (
    CRL_KEY,
    STORE_SELECTOR,
    STORE_SUFFIX,
    RevocationStore,
    StoredRevocation,
    entry_key,
    entry_value,
    read_store,
    store_body,
    store_name,
)
from mtls_operator.api.trust_bundles import configmaps_path
from mtls_operator.authorities.store import CARef
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import Change, InformerGroup, SharedCache
from mtls_operator.runtime.kube import Kube

Object = dict[str, Any]


class ForeignStoreError(Exception):
    """The record's ConfigMap exists and is not the operator's."""


def _store_version(store: RevocationStore) -> str:
    return store.resource_version


def ca_of_store(store: RevocationStore) -> CARef:
    return CARef(store.namespace, store.name.removesuffix(STORE_SUFFIX))


class Revocations:
    def __init__(self, cache: SharedCache, kube: Kube, namespaces: tuple[str, ...]) -> None:
        """`namespaces`: where CA Secrets may be (empty: all)."""
        self._kube = kube
        # Entries waiting for the next patch of their CA's record, and who waits for each.
        self._pending: dict[CARef, list[tuple[StoredRevocation, asyncio.Future[None]]]] = {}
        self._writers: dict[CARef, asyncio.Task[None]] = {}
        self.stores: InformerGroup[RevocationStore] = cache.group(
            "revocations",
            configmaps_path,
            read_store,
            namespaces,
            STORE_SELECTOR,
            version_of=_store_version,
        )

    async def synced(self) -> None:
        await self.stores.synced()

    def get(self, ca: CARef) -> RevocationStore | None:
        return self.stores.get((ca.namespace, store_name(ca.name)))

    def holds(self, ca: CARef, serial_number: int) -> bool:
        store = self.get(ca)
        return store is not None and store.holds(serial_number)

    def crl_pem(self, ca: CARef) -> str:
        store = self.get(ca)
        return store.crl_pem if store is not None else ""

    def authorities(self) -> list[CARef]:
        """The CAs that have a record."""
        return sorted(ca_of_store(store) for _, store in self._items())

    def on_change(self, notify: Callable[[CARef], None], *, crl_only: bool = False) -> None:
        """`notify(ca)` when a CA's record changes (`crl_only`: when its CRL does)."""

        def changed(change: Change[RevocationStore]) -> None:
            old, new = change.old, change.new
            if crl_only and old is not None and new is not None and old.crl_pem == new.crl_pem:
                return
            notify(ca_of_store(change.latest))

        self.stores.subscribe(changed)

    def on_recorded(self, notify: Callable[[tuple[str, str]], None]) -> None:
        """`notify((namespace, name))` of each MtlsCertificate whose
        revocation was just recorded."""

        def changed(change: Change[RevocationStore]) -> None:
            before = change.old.entries if change.old is not None else {}
            after = change.new.entries if change.new is not None else {}
            for serial, entry in after.items():
                if serial not in before and entry.certificate:
                    namespace, _, name = entry.certificate.partition("/")
                    notify((namespace, name))

        self.stores.subscribe(changed)

    async def record(self, ca: CARef, entry: StoredRevocation) -> None:
        """Returns once `entry` is in the record (with the others asked for
        meanwhile); raises what writing it raised."""
        waiting = asyncio.get_running_loop().create_future()
        self._pending.setdefault(ca, []).append((entry, waiting))
        writer = self._writers.get(ca)
        if writer is None or writer.done():
            self._writers[ca] = asyncio.create_task(self._write_pending(ca))
        await waiting

    async def _write_pending(self, ca: CARef) -> None:
        while batch := self._pending.pop(ca, []):
            try:
                written = await add_revocations(self._kube, ca, [entry for entry, _ in batch])
            except Exception as err:  # every waiter hears it: each handles it its way
                for _, waiting in batch:
                    if not waiting.done():
                        waiting.set_exception(err)
                continue
            self.stores.wrote(written)
            for _, waiting in batch:
                if not waiting.done():
                    waiting.set_result(None)

    async def write_crl(
        self, store: RevocationStore, crl_pem: str, dropped: tuple[int, ...]
    ) -> bool:
        """Replace the CRL and drop the entries it no longer lists, if the
        record is still as read (False when it changed meanwhile: a new
        entry must not be lost to a CRL signed without it)."""
        data: dict[str, str | None] = {CRL_KEY: crl_pem}
        data.update({store.entry_keys.get(serial, entry_key(serial)): None for serial in dropped})
        patch = {"metadata": {"resourceVersion": store.resource_version}, "data": data}
        try:
            written = await self._kube.merge_patch(
                configmaps_path(store.namespace, store.name), patch
            )
        except ApiError as err:
            if err.conflict or err.not_found:
                return False
            raise
        self.stores.wrote(written)
        return True

    async def create(self, ca: CARef) -> None:
        """An empty record, so that the CA gets a CRL before anything is revoked."""
        name = store_name(ca.name)
        try:
            written = await self._kube.create(
                configmaps_path(ca.namespace), store_body(ca.namespace, name, {})
            )
        except ApiError as err:
            if not err.conflict:
                raise
            # Made meanwhile (its watch event follows), or someone else's.
            _require_ours(await self._kube.get(configmaps_path(ca.namespace, name)) or {}, ca)
            return
        self.stores.wrote(written)

    def _items(self) -> list[tuple[tuple[str, str], RevocationStore]]:
        return [(key, store) for key in self.stores if (store := self.stores.get(key))]


async def add_revocations(kube: Kube, ca: CARef, entries: Iterable[StoredRevocation]) -> Object:
    """Add entries to `ca`'s record, making the record if there is none.
    An entry is a key of its own, so no resourceVersion is needed: a merge
    patch that adds keys leaves every other entry as it is."""
    name = store_name(ca.name)
    path = configmaps_path(ca.namespace, name)
    values = {entry.revocation.serial_number: entry_value(entry) for entry in entries}
    current = await kube.get(path)
    if current is None:
        data = {entry_key(serial): value for serial, value in values.items()}
        try:
            return await kube.create(
                configmaps_path(ca.namespace), store_body(ca.namespace, name, data)
            )
        except ApiError as err:
            if not err.conflict:
                raise
            current = await kube.get(path) or {}
    _require_ours(current, ca)
    held = read_store(current)
    # Recorded before: the first revocation time stands.
    new = {entry_key(s): value for s, value in values.items() if not held.holds(s)}
    if not new:
        return current
    return await kube.merge_patch(path, {"data": new})


def _require_ours(body: Mapping[str, Any], ca: CARef) -> None:
    labels = (body.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGER:
        raise ForeignStoreError(
            f"ConfigMap {ca.namespace}/{store_name(ca.name)} exists and is not managed by "
            f"mtls-operator, so the revocations of CA {ca} cannot be recorded there "
            "(rename or delete it)"
        )
