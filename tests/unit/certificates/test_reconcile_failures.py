"""A certificate whose issuance keeps failing, through one real controller,
store, work queue and scheduler over an in-memory API: each failure writes
the status once, is not queued again at once, and waits longer each time."""

from __future__ import annotations

import asyncio
from typing import Any

from mtls_operator.api.resources import certificates_path
from mtls_operator.certificates.controller import NAME
from mtls_operator.pki import CertificateAuthority
from mtls_operator.runtime import backoff

from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, certificate_controller, delivered, written_paths
from support.objects import MIN_DURATION, NAMESPACE, spec_dict

KEY = (NAMESPACE, "java")


def test_a_failing_issuance_backs_off_and_writes_once_per_attempt(
    ecdsa_ca: CertificateAuthority,
) -> None:
    clock = FakeClock(NOW)
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
    with certificate_controller(kube, {CLUSTER_CA: ecdsa_ca}, clock, min_duration=MIN_DURATION) as (
        runtime,
        controller,
    ):
        delivered(
            controller.store.certificates, kube.put(certificates_path(NAMESPACE, "java"), body)
        )
        lane = runtime.lane(NAME)

        async def attempts(count: int) -> list[float | None]:
            due = []
            for _ in range(count):
                taken = await runtime.queue.get()
                assert taken == (NAME, KEY)
                await controller.reconcile(KEY)
                runtime.queue.done(taken)
                assert len(runtime.queue) == 0, "a failure must not queue it again at once"
                due.append(lane.due_at(KEY))
                lane.add(KEY)  # the scheduler's turn, without waiting for it
            return due

        due = asyncio.run(attempts(4))

    assert due == [clock.time() + delay for delay in backoff.RECONCILE[:4]]
    assert len(written_paths(kube)) == 4, "one status write per failed attempt"
    status = kube.objects[certificates_path(NAMESPACE, "java")]["status"]
    assert status["failedIssuanceAttempts"] == 4
    ready, reconciling = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "IssuanceFailed")
    assert (reconciling["type"], reconciling["status"]) == ("Reconciling", "True")
    assert "keystore password Secret shop/missing" in ready["message"]
    assert lane.failures(KEY) == 4
