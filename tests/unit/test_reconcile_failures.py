"""A certificate whose issuance keeps failing, through one real Reconciler,
Store, WorkQueue and Scheduler over an in-memory API: each failure writes the
status once, is not queued again at once, and waits longer each time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from mtls_operator import reconcile
from mtls_operator.cas import CARef
from mtls_operator.kube import certificates_path
from mtls_operator.metrics import Metrics
from mtls_operator.pki import CertificateAuthority
from mtls_operator.reconcile import RETRY_DELAYS, Reconciler, Settings
from mtls_operator.scheduler import Scheduler, TokenBucket, WorkQueue
from mtls_operator.store import Key, Store

from conftest import NOW
from helpers.fake_api import FakeKube, FixedCAs, written_paths
from helpers.objects import MIN_DURATION, NAMESPACE, spec_dict

CLUSTER_CA = CARef("mtls-system", "mtls-operator-ca")
KEY = (NAMESPACE, "java")


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def test_a_failing_issuance_backs_off_and_writes_once_per_attempt(
    ecdsa_ca: CertificateAuthority, executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1000.0
    monkeypatch.setattr(reconcile, "time", SimpleNamespace(time=lambda: now, monotonic=lambda: now))
    queue: WorkQueue[Key] = WorkQueue()
    scheduler: Scheduler[Key] = Scheduler(queue, clock=lambda: now)
    store = Store(queue.add)
    kube = FakeKube()
    # The keystore password Secret does not exist: every attempt fails.
    body: dict[str, Any] = {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"namespace": NAMESPACE, "name": "java", "uid": "uid-java", "generation": 1},
        "spec": spec_dict(
            secretName="java-tls", keystores={"pkcs12": {"passwordSecretRef": {"name": "missing"}}}
        ),
    }
    store.upsert_certificate(kube.put(certificates_path(NAMESPACE, "java"), body))
    reconciler = Reconciler(
        kube=kube,
        store=store,
        cas=FixedCAs({CLUSTER_CA: ecdsa_ca}),
        scheduler=scheduler,
        limiter=TokenBucket(1.0, burst=1),
        executor=executor,
        metrics=Metrics(),
        settings=Settings(CLUSTER_CA, MIN_DURATION),
        clock=lambda: NOW,
    )

    async def attempts(count: int) -> list[float | None]:
        due = []
        for _ in range(count):
            taken = await queue.get()
            assert taken == KEY
            await reconciler.reconcile(KEY)
            queue.done(KEY)
            assert len(queue) == 0, "a failure must not queue the certificate again at once"
            due.append(scheduler.due_at(KEY))
            queue.add(KEY)  # the scheduler's turn, without waiting for it
        return due

    due = asyncio.run(attempts(4))

    assert due == [now + delay for delay in RETRY_DELAYS[:4]]
    assert len(written_paths(kube)) == 4, "one status write per failed attempt"
    status = kube.objects[certificates_path(NAMESPACE, "java")]["status"]
    assert status["failedIssuanceAttempts"] == 4
    [ready] = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "IssuanceFailed")
    assert "keystore password Secret shop/missing" in ready["message"]
    assert store.certificates[KEY].failures == 4
