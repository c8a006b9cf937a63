"""Certificates naming one Secret: when its owner is deleted, only the new
owner is looked at again (thousands may name it), so what the others'
statuses say must stay true without a look: they name no owner."""

from __future__ import annotations

import asyncio
from typing import Any

from mtls_operator.api.resources import certificates_path
from mtls_operator.pki import CertificateAuthority

from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, certificate_controller, delivered, status_of
from support.objects import MIN_DURATION, NAMESPACE, certificate_body

CONFLICT = "Secret shared-tls is also named by an older certificate, which owns it"


def claimant(name: str, second: int) -> dict[str, Any]:
    return certificate_body(name, created=f"2026-11-28T12:00:0{second}Z", secretName="shared-tls")


def ready(kube: FakeKube, name: str) -> tuple[str, str]:
    condition = status_of(kube, certificates_path(NAMESPACE, name))["conditions"][0]
    return condition["reason"], condition["message"]


def test_the_claimants_not_woken_when_the_owner_goes_say_nothing_untrue(
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube = FakeKube()
    bodies = {name: claimant(name, second) for second, name in enumerate("abc")}
    with certificate_controller(
        kube, {CLUSTER_CA: ecdsa_ca}, FakeClock(NOW), min_duration=MIN_DURATION
    ) as (runtime, controller):

        async def scenario() -> list[tuple[str, str]]:
            for name, body in bodies.items():
                controller.store.certificates.wrote(
                    kube.put(certificates_path(NAMESPACE, name), body)
                )
                await controller.reconcile((NAMESPACE, name))
            assert ready(kube, "a")[0] == "Issued"
            assert [ready(kube, name) for name in "bc"] == [("SecretConflict", CONFLICT)] * 2
            delivered(
                controller.store.certificates,
                kube.objects.pop(certificates_path(NAMESPACE, "a")),
                "DELETED",
            )
            woken = []
            while len(runtime.queue):
                taken = await runtime.queue.get()
                woken.append(taken[1])
                await controller.reconcile(taken[1])
                runtime.queue.done(taken)
            return sorted(woken)

        assert asyncio.run(scenario()) == [(NAMESPACE, "a"), (NAMESPACE, "b")]
    assert ready(kube, "b")[0] in ("Issued", "Reissued")
    assert ready(kube, "c") == ("SecretConflict", CONFLICT), "c was not looked at, yet true"
