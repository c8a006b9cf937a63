"""Rate-limited re-issuance, through one real Reconciler over an in-memory API:
after a CA swap, certificates beyond the burst must be re-issued in their turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from mtls_operator import reconcile
from mtls_operator.cas import CARef
from mtls_operator.kube import certificates_path, secrets_path
from mtls_operator.metrics import Metrics
from mtls_operator.pki import CertificateAuthority
from mtls_operator.reconcile import Reconciler, Settings
from mtls_operator.resources import CertificateRef
from mtls_operator.scheduler import Scheduler, TokenBucket, WorkQueue
from mtls_operator.secrets import read_secret
from mtls_operator.store import Key, Store

from conftest import NOW, make_ca
from helpers.fake_api import FakeKube, FixedCAs
from helpers.objects import MIN_DURATION, NAMESPACE, certificate_spec, secret_body, spec_dict

CLUSTER_CA = CARef("mtls-system", "mtls-operator-ca")
NAMES = ("a", "b", "c")


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def certificate_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {
            "namespace": NAMESPACE,
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-11-28T11:00:00Z",
        },
        "spec": spec_dict(secretName=f"{name}-tls"),
    }


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def issuer_of(kube: FakeKube, name: str) -> str | None:
    leaf = read_secret(kube.objects[secrets_path(NAMESPACE, f"{name}-tls")]).leaf
    return leaf.issuer if leaf else None


def secret_revision(kube: FakeKube, name: str) -> int:
    return read_secret(kube.objects[secrets_path(NAMESPACE, f"{name}-tls")]).revision


def world(
    ca: CertificateAuthority,
    old_ca: CertificateAuthority,
    executor: ThreadPoolExecutor,
    limiter: TokenBucket,
    scheduler: Scheduler[Key] | None = None,
) -> tuple[FakeKube, Reconciler]:
    """Three certificates whose Secrets were issued by `old_ca`, while the
    cluster CA is now `ca`."""
    kube = FakeKube()
    store = Store(lambda key: None)
    for name in NAMES:
        kube.put(certificates_path(NAMESPACE, name), certificate_body(name))
        store.upsert_certificate(kube.objects[certificates_path(NAMESPACE, name)])
        owner = CertificateRef(NAMESPACE, name, f"uid-{name}")
        secret = secret_body(certificate_spec(secretName=f"{name}-tls"), old_ca, owner=owner)
        store.upsert_secret(kube.put(secrets_path(NAMESPACE, f"{name}-tls"), secret))
    reconciler = Reconciler(
        kube=kube,
        store=store,
        cas=FixedCAs({CLUSTER_CA: ca}),
        scheduler=Scheduler(WorkQueue()) if scheduler is None else scheduler,
        limiter=limiter,
        executor=executor,
        metrics=Metrics(),
        settings=Settings(CLUSTER_CA, MIN_DURATION),
        clock=lambda: NOW,
    )
    return kube, reconciler


def test_a_reissue_within_the_burst_takes_three_writes(
    ecdsa_ca: CertificateAuthority, executor: ThreadPoolExecutor
) -> None:
    kube, reconciler = world(
        ecdsa_ca, make_ca(common_name="Old Root CA"), executor, TokenBucket(1.0, burst=5)
    )
    kube.writes.clear()
    asyncio.run(reconciler.reconcile((NAMESPACE, "a")))
    assert issuer_of(kube, "a") == "CN=Test Root CA"
    assert kube.writes == [
        ("PATCH", secrets_path(NAMESPACE, "a-tls")),
        ("PATCH", certificates_path(NAMESPACE, "a", "status")),
        ("POST", "/api/v1/namespaces/shop/events"),
    ]
    [ready] = kube.objects[certificates_path(NAMESPACE, "a")]["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Reissued")
    assert kube.objects[certificates_path(NAMESPACE, "a")]["status"]["revision"] == 2


def test_certificates_beyond_the_burst_are_reissued_in_their_turn(
    ecdsa_ca: CertificateAuthority, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One clock for the token bucket and for the wall-clock times the
    # reconciler gives the scheduler (its rate-limit turns).
    clock = ManualClock()
    monkeypatch.setattr(reconcile, "time", SimpleNamespace(time=clock, monotonic=time.monotonic))
    scheduler: Scheduler[Key] = Scheduler(WorkQueue(), clock=clock)
    kube, reconciler = world(
        ecdsa_ca,
        make_ca(common_name="Old Root CA"),
        executor,
        TokenBucket(1.0, burst=1, clock=clock),
        scheduler,
    )

    async def scenario() -> None:
        for name in NAMES:
            await reconciler.reconcile((NAMESPACE, name))
        # The burst: a is re-issued, b and c were told to come back in 1 s and 2 s.
        assert [issuer_of(kube, n) for n in NAMES] == [
            "CN=Test Root CA",
            "CN=Old Root CA",
            "CN=Old Root CA",
        ]
        assert [scheduler.due_at((NAMESPACE, n)) for n in ("b", "c")] == [1.0, 2.0]
        # Each comes back at its turn and is issued without queueing again.
        clock.now = 1.0
        await reconciler.reconcile((NAMESPACE, "b"))
        assert issuer_of(kube, "b") == "CN=Test Root CA"
        clock.now = 2.0
        await reconciler.reconcile((NAMESPACE, "c"))

    asyncio.run(scenario())
    assert [issuer_of(kube, n) for n in NAMES] == ["CN=Test Root CA"] * 3
    assert [secret_revision(kube, n) for n in NAMES] == [2, 2, 2]


def test_an_early_look_keeps_the_turn_it_was_given(
    ecdsa_ca: CertificateAuthority, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock()
    monkeypatch.setattr(reconcile, "time", SimpleNamespace(time=clock, monotonic=time.monotonic))
    scheduler: Scheduler[Key] = Scheduler(WorkQueue(), clock=clock)
    kube, reconciler = world(
        ecdsa_ca,
        make_ca(common_name="Old Root CA"),
        executor,
        TokenBucket(1.0, burst=1, clock=clock),
        scheduler,
    )

    async def scenario() -> None:
        for name in NAMES:
            await reconciler.reconcile((NAMESPACE, name))
        clock.now = 0.5
        for name in ("b", "c"):
            await reconciler.reconcile((NAMESPACE, name))
        assert [scheduler.due_at((NAMESPACE, n)) for n in ("b", "c")] == [1.0, 2.0]
        clock.now = 1.0
        await reconciler.reconcile((NAMESPACE, "b"))
        clock.now = 2.0
        await reconciler.reconcile((NAMESPACE, "c"))

    asyncio.run(scenario())
    assert [issuer_of(kube, n) for n in NAMES] == ["CN=Test Root CA"] * 3
