"""The CA store reads each CA Secret off the event loop, and opens an
encrypted key again only when the key or the passphrase changed: a tenant
editing its CA Secret's labels, or its passphrase Secret's, costs no key
derivation, and a wrong passphrase is not tried again and again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from mtls_operator.api.secret_data import encode_data
from mtls_operator.authorities.decrypted_keys import DecryptedKeys
from mtls_operator.authorities.layouts import PASSPHRASE_ANNOTATION
from mtls_operator.authorities.store import (
    CA_REREAD_INTERVAL,
    AuthorityStore,
    CARef,
    CAUnusable,
)
from mtls_operator.pki import CertificateAuthority, KeyLoadError, PrivateKey, load_private_key
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem
from mtls_operator.runtime.kube import Object
from mtls_operator.runtime.metrics import Metrics

from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.encrypted_keys import encrypted_with_pbkdf2
from support.fake_api import NamedWatches, runtime_cache

NS = "team-a"
REF = CARef(NS, "team-ca")


class WatchedSecrets(NamedWatches):
    def secret(self, name: str, data: Mapping[str, bytes], **annotations: str) -> None:
        body: Object = {
            "metadata": {"name": name, "namespace": NS, "annotations": annotations},
            "data": encode_data(data),
        }
        self.put(f"/api/v1/namespaces/{NS}/secrets/{name}", body)


async def read(ref: CARef) -> None:
    """Returns once the reads of `ref` started so far are done."""
    reading = [t for t in asyncio.all_tasks() if t.get_name() == f"read-ca-{ref}"]
    await asyncio.gather(*reading)


class CountingLoader:
    def __init__(self) -> None:
        self.threads: list[str] = []

    def __call__(self, pem: bytes, passphrase: bytes | None) -> PrivateKey:
        self.threads.append(threading.current_thread().name)
        return load_private_key(pem, passphrase)


def test_a_ca_key_is_opened_off_the_loop_and_once_per_key_and_passphrase() -> None:
    ca = make_ca()
    kube = WatchedSecrets()
    loader = CountingLoader()
    changes: list[str] = []
    data = {
        "tls.crt": certificates_to_pem([ca.certificate]),
        "tls.key": encrypted_with_pbkdf2(ca.private_key, b"s3cret", 1000),
    }

    def layout(**annotations: str) -> None:
        kube.secret(
            "team-ca",
            data,
            **{PASSPHRASE_ANNOTATION: "team-ca-pass"},
            **annotations,
        )

    async def scenario() -> None:
        clock = FakeClock(NOW)
        store = AuthorityStore(runtime_cache(kube, clock), clock, Metrics(), load_key=loader)

        async def settled() -> Any:
            """The state once every event so far was read."""
            await kube.delivered()
            await read(REF)
            clock.advance(CA_REREAD_INTERVAL)  # the next edit is read at once
            return await store.state(REF)

        kube.secret("team-ca-pass", {"passphrase": b"s3cret\n"})
        layout()
        store.use(REF, changes.append, "user")
        state = await store.state(REF)
        assert isinstance(state, CertificateAuthority)
        assert state.fingerprint == ca.fingerprint
        assert len(loader.threads) == 1
        assert loader.threads[0].startswith("ca-read"), "not opened in a thread of its own"
        clock.advance(CA_REREAD_INTERVAL)

        for edit in range(5):  # unrelated edits of both Secrets
            layout(edit=str(edit))
            kube.secret("team-ca-pass", {"passphrase": b"s3cret"}, edit=str(edit))
        assert isinstance(await settled(), CertificateAuthority)
        assert len(loader.threads) == 1, "an unchanged key was opened again"
        assert changes == []

        kube.secret("team-ca-pass", {"passphrase": b"wrong"})
        wrong = await settled()
        assert isinstance(wrong, CAUnusable)
        assert wrong.message == (
            f"CA Secret {REF}: the CA key is unusable: "
            "the private key could not be decrypted: wrong passphrase"
        )
        assert changes == ["user"]
        for edit in range(5):
            layout(again=str(edit))
        assert isinstance(await settled(), CAUnusable)
        assert len(loader.threads) == 2, "a wrong passphrase was tried again"
        await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


class BlockingLoader:
    """Opens keys once let through, counting how many it opens at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.started = 0
        self.running = 0
        self.most = 0

    def __call__(self, pem: bytes, passphrase: bytes | None) -> PrivateKey:
        with self.lock:
            self.started += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.open.wait(10), "never let through"
            return load_private_key(pem, passphrase)
        finally:
            with self.lock:
                self.running -= 1


def ca_data(ca: CertificateAuthority) -> dict[str, bytes]:
    return {
        "tls.crt": certificates_to_pem([ca.certificate]),
        "tls.key": private_key_to_pem(ca.private_key),
    }


async def started(loader: BlockingLoader, count: int) -> None:
    while loader.started < count:
        await asyncio.sleep(0.01)


def test_a_tenant_switching_its_ca_reads_one_at_a_time() -> None:
    kube = WatchedSecrets()
    for index in range(4):
        kube.secret(f"ca-{index}", ca_data(make_ca(common_name=f"CA {index}")))
    loader = BlockingLoader()

    async def scenario() -> None:
        clock = FakeClock(NOW)
        store = AuthorityStore(runtime_cache(kube, clock), clock, Metrics(), load_key=loader)
        woken: list[str] = []
        try:
            for index in range(4):
                # Each use drops the CA used before, and its read with it.
                store.use(CARef(NS, f"ca-{index}"), woken.append, "cert", tenant=True)
                await kube.delivered()
                await started(loader, 1)
            await asyncio.sleep(0.2)  # time for any other read to start
            assert (loader.started, loader.most) == (1, 1)
            loader.open.set()
            state = await store.state(CARef(NS, "ca-3"))
            assert isinstance(state, CertificateAuthority)
            assert state.subject == "CN=CA 3"
            assert loader.most == 1
        finally:
            loader.open.set()
            await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_cluster_ca_is_read_while_a_tenant_holds_the_tenants_thread() -> None:
    kube = WatchedSecrets()
    kube.secret("team-ca", ca_data(make_ca(common_name="Team CA")))
    kube.secret("cluster-ca", ca_data(make_ca(common_name="Cluster CA")))
    cluster = CARef(NS, "cluster-ca")
    loader = BlockingLoader()

    def load_key(pem: bytes, passphrase: bytes | None) -> PrivateKey:
        if loader.started == 0:
            return loader(pem, passphrase)  # the tenant's, read first, is stuck
        return load_private_key(pem, passphrase)

    async def scenario() -> None:
        clock = FakeClock(NOW)
        store = AuthorityStore(runtime_cache(kube, clock), clock, Metrics(), load_key=load_key)
        try:
            store.use(REF, lambda _: None, "cert", tenant=True)
            await started(loader, 1)
            store.use(cluster, lambda _: None, "pods")
            state = await asyncio.wait_for(store.state(cluster), 5)
            assert isinstance(state, CertificateAuthority)
            assert state.subject == "CN=Cluster CA"
            assert loader.running == 1, "the tenant's read is still going"
        finally:
            loader.open.set()
            await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_ca_whose_secret_keeps_changing_is_read_once_per_interval() -> None:
    kube = WatchedSecrets()
    cas = [make_ca(common_name=f"CA {index}") for index in range(3)]
    kube.secret("team-ca", ca_data(cas[0]))
    loader = CountingLoader()
    clock = FakeClock(NOW)

    async def scenario() -> None:
        store = AuthorityStore(runtime_cache(kube, clock), clock, Metrics(), load_key=loader)
        try:
            store.use(REF, lambda _: None, "cert", tenant=True)
            assert isinstance(await store.state(REF), CertificateAuthority)
            # Edited again a moment later, and again while it waits.
            clock.advance(CA_REREAD_INTERVAL - 0.3)
            kube.secret("team-ca", ca_data(cas[1]))
            await kube.delivered()
            await asyncio.sleep(0.1)
            kube.secret("team-ca", ca_data(cas[2]))
            await kube.delivered()
            assert len(loader.threads) == 1, "read again before its interval was over"
            await read(REF)
            assert len(loader.threads) == 2, "the edits meanwhile are one read"
            state = await store.state(REF)
            assert isinstance(state, CertificateAuthority)
            assert state.subject == "CN=CA 2"
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


# --- Decrypted keys are remembered ---


def test_the_same_key_and_passphrase_are_opened_once() -> None:
    key = make_ca().private_key
    pem = encrypted_with_pbkdf2(key, b"s3cret", 1000)
    loader = CountingLoader()
    keys = DecryptedKeys(loader)
    first = keys.load(pem, b"s3cret")
    assert keys.load(pem, b"s3cret") is first
    assert len(loader.threads) == 1
    for _ in range(2):
        with pytest.raises(KeyLoadError, match="wrong passphrase"):
            keys.load(pem, b"wrong")
    assert len(loader.threads) == 2, "a failure is remembered too"
    assert keys.load(pem, b"s3cret") is not None
    assert len(loader.threads) == 3, "only the last key and passphrase are remembered"
    unencrypted = private_key_to_pem(key)
    assert keys.load(unencrypted, None).public_key().public_numbers() == (  # type: ignore[union-attr]
        key.public_key().public_numbers()  # type: ignore[union-attr]
    )


def test_threads_opening_the_same_key_open_it_once() -> None:
    pem = private_key_to_pem(make_ca().private_key)
    loader = BlockingLoader()
    keys = DecryptedKeys(loader)
    found: list[PrivateKey] = []
    threads = [threading.Thread(target=lambda: found.append(keys.load(pem, None))) for _ in "ab"]
    for thread in threads:
        thread.start()
    while loader.started == 0:
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)  # time for the other to open it too
    loader.open.set()
    for thread in threads:
        thread.join(10)
    assert loader.started == 1
    assert len(found) == 2
    assert found[0] is found[1]
