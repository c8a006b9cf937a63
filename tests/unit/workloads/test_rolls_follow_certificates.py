"""The workload controller and the certificate controller on one runtime:
they read the managed Secrets through the same informer, so the
certificate controller's own write of a renewed Secret (held at once,
before its watch event) is what rolls the workloads that mount it."""

from __future__ import annotations

import asyncio
import datetime
from functools import partial

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.paths import events_path, secrets_path
from mtls_operator.api.resources import RENEW_REQUESTED_ANNOTATION, certificates_path
from mtls_operator.api.workloads import RESTARTED_FOR_ANNOTATION, WorkloadKind, workloads_path
from mtls_operator.pki import CertificateAuthority
from mtls_operator.workloads.controller import NAME, WorkloadController, WorkloadSettings
from mtls_operator.workloads.facts import READERS

from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, certificate_controller, delivered
from support.objects import (
    CERTIFICATE,
    MIN_DURATION,
    NAMESPACE,
    SECRET_NAME,
    certificate_body,
    certificate_spec,
    secret_body,
)
from support.workloads import rolled_out, workload_body

CERTIFICATE_PATH = certificates_path(NAMESPACE, CERTIFICATE.name)
SECRET_PATH = secrets_path(NAMESPACE, SECRET_NAME)
WORKLOAD_PATH = workloads_path(WorkloadKind.DEPLOYMENT, NAMESPACE, "payments")
KEY = (NAMESPACE, "Deployment", "payments")


def test_a_renewal_by_the_certificate_controller_rolls_what_mounts_its_secret(
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube, clock = FakeKube(), FakeClock(NOW)
    with certificate_controller(kube, {CLUSTER_CA: ecdsa_ca}, clock, min_duration=MIN_DURATION) as (
        runtime,
        certificates,
    ):
        workloads = WorkloadController(
            runtime, WorkloadSettings(rate=1.0, window=datetime.timedelta(seconds=5), burst=5)
        )
        workloads.follow()
        store = certificates.store
        body = certificate_body(CERTIFICATE.name, secretName=SECRET_NAME)
        delivered(store.certificates, kube.put(CERTIFICATE_PATH, body))
        delivered(store.secrets, kube.put(SECRET_PATH, secret_body(certificate_spec(), ecdsa_ca)))
        deployment = rolled_out(workload_body("payments", secrets=[SECRET_NAME]))
        deployment["metadata"].update(namespace=NAMESPACE, uid="uid-payments-deployment")
        stored = kube.put(WORKLOAD_PATH, deployment)
        deployments = runtime.cache.group(
            "deployments",
            partial(workloads_path, WorkloadKind.DEPLOYMENT),
            READERS[WorkloadKind.DEPLOYMENT],
            (),
        )
        informer = deployments.of(NAMESPACE)
        assert informer is not None
        informer.apply("ADDED", stored)

        async def scenario() -> None:
            await workloads.reconcile(KEY)  # first sight: recorded
            # `kubectl mtls renew`, then the certificate controller's look.
            body["metadata"]["annotations"] = {RENEW_REQUESTED_ANNOTATION: "2026-11-28T12:01:00Z"}
            delivered(store.certificates, kube.put(CERTIFICATE_PATH, body))
            clock.advance(60)
            await certificates.reconcile(CERTIFICATE.key)
            lane = runtime.lane(NAME)
            assert lane.due_at(KEY) is None
            assert len(runtime.queue) == 2, "the certificate's key, and the workload's"
            await workloads.reconcile(KEY)  # the window opens
            clock.advance(5)
            await workloads.reconcile(KEY)

        asyncio.run(scenario())
    leaf = read_secret(kube.objects[SECRET_PATH]).leaf
    assert leaf is not None
    template = kube.objects[WORKLOAD_PATH]["spec"]["template"]["metadata"]
    assert RESTARTED_FOR_ANNOTATION in template["annotations"]
    reasons = {
        (event["involvedObject"]["kind"], event["reason"])
        for event in kube.created(events_path(NAMESPACE))
    }
    assert {("Deployment", "CertificateRolled"), ("MtlsCertificate", "WorkloadRolled")} <= reasons
    [rolled] = [e for e in kube.created(events_path(NAMESPACE)) if e["reason"] == "WorkloadRolled"]
    assert rolled["involvedObject"]["uid"] == CERTIFICATE.uid
    assert leaf.serial_number in rolled["message"]
