"""One tenant does its worst while another works. Tenant A, a user who is
admin of its namespace only (Kubernetes' `admin` role, real RBAC through
impersonation), at once applies a CA key that would take minutes to open,
5,000 certificates naming one Secret (signed by its own CA, whose trust bundle
it edits again and again: each edit queues them all again), a certificate and
a labelled Secret as large as the API server stores, and a stream of RSA-4096
re-issues. Meanwhile
tenant B's new certificates are Ready and a node's pod certificate requests
are answered within 2 s (p95), the operator's /readyz answers 200 all along,
and it never loses its Lease; tenant A's own objects each get a reason that
says what is wrong.

Each tenant can also make the operator watch only so many Secrets by name: a
CA Secret or keystore password Secret beyond its namespace's quota is
refused in one line naming the field, and taken up when a watch is freed."""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import json
import os
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from mtls_operator.authorities.store import CA_SECRETS_PER_NAMESPACE
from mtls_operator.pki import certificates_to_pem, private_key_to_pem
from mtls_operator.runtime.named_secrets import PASSWORD_SECRETS_PER_NAMESPACE

from e2e.kubelet import FakeKubelet, PodIdentity
from e2e.tenants import (
    LARGE,
    MANAGED_BY,
    Tenants,
    create_as_tenant,
    impersonating,
    noisy_and_neighbour,
    secret,
)
from localcluster import Kubectl
from operator_process import OperatorProcess
from support import encrypted_keys
from support.authorities import make_ca
from support.cluster import (
    CLUSTER_CA_SECRET,
    GROUP,
    OPERATOR_NAMESPACE,
    PLURAL,
    VERSION,
    KubeCluster,
    certificate,
    condition,
    create_certificate,
    get_certificate,
    plain,
    wait_for,
    wait_reason,
)

# What the issue asks of the operator while tenant A is at it.
PROMPTLY = 2.0
SAMPLES = 20
CLAIMANTS = 5000
BULK_CREATORS = 8
RSA_NAMES = [f"rsa-{index}" for index in range(6)]
# The operator gives the Lease up when it was not renewed for this long.
RENEW_DEADLINE = 10.0
RENEWAL_ANNOTATION = "mtls.dev/renew-requested-at"
OWN_CA = "own-ca"
PCR_GROUP, PCR_VERSION, PCR_PLURAL = "certificates.k8s.io", "v1", "podcertificaterequests"


@pytest.fixture
def tenants(kube_cluster: KubeCluster, kubectl: Kubectl, mtls_crd: None) -> Iterator[Tenants]:
    """New namespaces for each test: the quota one uses up tenant A's watches."""
    with noisy_and_neighbour(kubectl, kube_cluster.kubeconfig) as made:
        yield made


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def figures(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
        f"max {max(values):.2f} s over {len(values)}"
    )


# --- the quota of Secrets watched by name ---


def test_a_namespace_makes_the_operator_watch_a_bounded_number_of_named_secrets(
    operator: OperatorProcess, kube_api: client.ApiClient, tenants: Tenants
) -> None:
    ns = tenants.noisy

    def named(name: str, **spec: Any) -> None:
        create_as_tenant(
            tenants, certificate(name, "server", dnsNames=[f"{name}.{ns}.svc"], **spec)
        )

    # Each CA Secret named is a watch; none of them exists, so each says so.
    for index in range(CA_SECRETS_PER_NAMESPACE):
        named(f"own-ca-{index}", caSecretName=f"ca-{index}")
    for index in range(CA_SECRETS_PER_NAMESPACE):
        wait_reason(kube_api, ns, f"own-ca-{index}", "CANotFound")
    named("one-ca-too-many", caSecretName="ca-extra")
    ready = condition(wait_reason(kube_api, ns, "one-ca-too-many", "InvalidSpec"))
    assert ready is not None
    assert ready["message"] == (
        f'spec.caSecretName "ca-extra": namespace {ns} already has {CA_SECRETS_PER_NAMESPACE} '
        "CA Secrets in use, the most the operator watches for one namespace"
    )
    # A watch freed is taken up: the refused certificate goes on by itself.
    tenants.as_noisy("delete", "mtlscertificate", "own-ca-0", "-n", ns)
    wait_reason(kube_api, ns, "one-ca-too-many", "CANotFound")

    def keystore(name: str) -> dict[str, Any]:
        return {"pkcs12": {"passwordSecretRef": {"name": name}}}

    for index in range(PASSWORD_SECRETS_PER_NAMESPACE):
        named(f"keystore-{index}", keystores=keystore(f"password-{index}"))
    for index in range(PASSWORD_SECRETS_PER_NAMESPACE):
        wait_reason(kube_api, ns, f"keystore-{index}", "IssuanceFailed")
    named("one-password-too-many", keystores=keystore("password-extra"))
    ready = condition(wait_reason(kube_api, ns, "one-password-too-many", "InvalidSpec"))
    assert ready is not None
    assert ready["message"] == (
        'spec.keystores.pkcs12.passwordSecretRef.name "password-extra": namespace '
        f"{ns} already has {PASSWORD_SECRETS_PER_NAMESPACE} keystore password Secrets in use, "
        "the most the operator watches for one namespace"
    )


# --- the noisy neighbour ---


def in_background(*jobs: Callable[[], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=job, daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    return threads


def join(stop: threading.Event, threads: list[threading.Thread]) -> None:
    stop.set()
    for thread in threads:
        thread.join(timeout=120)


@dataclass
class Watchdog:
    """Polls /readyz and the Lease in the background, from start to stop."""

    operator: OperatorProcess
    api: client.ApiClient
    lease: str
    stop: threading.Event = field(default_factory=threading.Event)
    readiness: list[tuple[float, int, str]] = field(default_factory=list)
    slowest_answer: float = 0.0
    holders: set[str] = field(default_factory=set)
    transitions: set[int] = field(default_factory=set)
    renewals: list[datetime.datetime] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def poll_readiness(self) -> None:
        while not self.stop.wait(0.25):
            started = time.monotonic()
            try:
                status, body = self.operator.readiness()
            except OSError as err:  # no answer at all
                status, body = 0, str(err)
            self.slowest_answer = max(self.slowest_answer, time.monotonic() - started)
            self.readiness.append((time.monotonic(), status, body))

    def poll_lease(self) -> None:
        while not self.stop.wait(1.0):
            leases = client.CoordinationV1Api(self.api)
            spec = plain(self.api, leases.read_namespaced_lease(self.lease, OPERATOR_NAMESPACE))
            spec = spec["spec"]
            self.holders.add(spec["holderIdentity"])
            self.transitions.add(spec.get("leaseTransitions", 0))
            renewed = datetime.datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
            if not self.renewals or self.renewals[-1] != renewed:
                self.renewals.append(renewed)

    def longest_without_renewal(self) -> float:
        pairs = zip(self.renewals, self.renewals[1:], strict=False)
        return max(((b - a).total_seconds() for a, b in pairs), default=0.0)

    @property
    def not_ready(self) -> list[tuple[float, int, str]]:
        return [answer for answer in self.readiness if answer[1] != 200]

    def start(self) -> None:
        self.threads = in_background(self.poll_readiness, self.poll_lease)

    def summary(self) -> str:
        return (
            f"/readyz polled {len(self.readiness)} times, {len(self.not_ready)} not 200, "
            f"slowest answer {self.slowest_answer:.2f} s; Lease holders {len(self.holders)}, "
            f"transitions {sorted(self.transitions)}, longest between renewals seen "
            f"{self.longest_without_renewal():.1f} s"
        )


@dataclass
class Noise:
    """What tenant A does, each in a thread of its own, until `stop`."""

    tenants: Tenants
    stop: threading.Event = field(default_factory=threading.Event)
    claimants_created: float | None = None
    ca_edits_made: int = 0
    renewals_asked: int = 0
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = in_background(
            self.slow_ca, self.oversized, self.claimants, self.ca_edits, self.rsa_churn
        )

    def slow_ca(self) -> None:
        """A CA whose key asks for the largest PBKDF2 iteration count
        (minutes of CPU), with a passphrase Secret, and a certificate naming it."""
        tenants = self.tenants
        ca = make_ca(common_name="Noisy CA", now=datetime.datetime.now(datetime.UTC)).certificate
        kdf = encrypted_keys.pbkdf2(2**31 - 1, os.urandom(16))
        key = encrypted_keys.unopenable(encrypted_keys.pbes2(kdf, os.urandom(16)))
        create_as_tenant(tenants, secret("slow-pass", {"passphrase": b"anything"}))
        layout = {"tls.crt": certificates_to_pem([ca]), "tls.key": key}
        annotations = {"mtls.dev/passphrase-secret": "slow-pass"}
        create_as_tenant(tenants, secret("slow-ca", layout, annotations=annotations))
        dns = [f"slow.{tenants.noisy}.svc"]
        create_as_tenant(
            tenants, certificate("slow", "server", caSecretName="slow-ca", dnsNames=dns)
        )

    def oversized(self) -> None:
        tenants = self.tenants
        template = {"annotations": {"note": "x" * LARGE}}
        dns = [f"huge.{tenants.noisy}.svc"]
        create_as_tenant(
            tenants, certificate("huge", "server", dnsNames=dns, secretTemplate=template)
        )
        blob = secret("huge-secret", {"blob": os.urandom(LARGE)}, labels=MANAGED_BY)
        create_as_tenant(tenants, blob)

    def claimants(self) -> None:
        """5,000 certificates naming one Secret, signed by the tenant's own
        CA: the first, then the others in lists, by kubectl processes side by
        side."""
        started = time.monotonic()
        ns = self.tenants.noisy

        def claimant(index: int) -> dict[str, Any]:
            dns = [f"shared.{ns}.svc"]
            return certificate(
                f"claimant-{index}", "server", "shared-tls", caSecretName=OWN_CA, dnsNames=dns
            )

        create_as_tenant(self.tenants, claimant(0))
        batches = [range(first, CLAIMANTS, BULK_CREATORS) for first in range(1, BULK_CREATORS + 1)]

        def create(batch: range) -> None:
            listed = {"apiVersion": "v1", "kind": "List", "items": [claimant(i) for i in batch]}
            self.tenants.as_noisy(
                "create",
                "-n",
                ns,
                "--validate=false",
                "-o",
                "name",
                "-f",
                "-",
                input=json.dumps(listed),
                timeout=300,
            )

        with concurrent.futures.ThreadPoolExecutor(BULK_CREATORS) as pool:
            list(pool.map(create, batches))
        self.claimants_created = time.monotonic() - started

    def ca_edits(self) -> None:
        """The tenant's own CA, and its trust bundle edited back and forth
        until `stop`: every edit makes each certificate using the CA, as many
        of the 5,000 as exist by then, look again (the operator reads a CA
        at most once per 2 seconds, so a burst every 2 seconds)."""
        now = datetime.datetime.now(datetime.UTC)
        own = make_ca(common_name="Noisy Own CA", now=now)
        root = certificates_to_pem([own.certificate])
        extra = certificates_to_pem([make_ca(common_name="Noisy Next CA", now=now).certificate])
        layout = {"tls.crt": root, "tls.key": private_key_to_pem(own.private_key), "ca.crt": root}
        create_as_tenant(self.tenants, secret(OWN_CA, layout))
        api = impersonating(self.tenants.kubeconfig)
        core = client.CoreV1Api(api)
        try:
            while not self.stop.wait(1.0):
                self.ca_edits_made += 1
                bundle = root + extra if self.ca_edits_made % 2 else root
                patch = {"data": {"ca.crt": base64.b64encode(bundle).decode()}}
                core.patch_namespaced_secret(OWN_CA, self.tenants.noisy, patch)
        finally:
            api.close()  # type: ignore[no-untyped-call]

    def rsa_churn(self) -> None:
        """RSA-4096 certificates, and renewals asked for them one after
        another: each one more RSA-4096 key."""
        api = impersonating(self.tenants.kubeconfig)
        custom = client.CustomObjectsApi(api)
        ns = self.tenants.noisy
        rsa = {"algorithm": "RSA", "size": 4096}
        try:
            for name in RSA_NAMES:
                body = certificate(name, "server", dnsNames=[f"{name}.{ns}.svc"], privateKey=rsa)
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
            while not self.stop.wait(0.2):
                at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                patch = {"metadata": {"annotations": {RENEWAL_ANNOTATION: at}}}
                name = RSA_NAMES[self.renewals_asked % len(RSA_NAMES)]
                custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)
                self.renewals_asked += 1
        finally:
            api.close()  # type: ignore[no-untyped-call]


def ready_within(api: client.ApiClient, namespace: str, name: str) -> float:
    """Create a certificate; seconds until it is Ready."""
    started = time.monotonic()
    create_certificate(
        api, namespace, certificate(name, "server", dnsNames=[f"{name}.{namespace}.svc"])
    )

    def ready() -> bool:
        found = condition(get_certificate(api, namespace, name))
        return found is not None and found["status"] == "True"

    wait_for(ready, timeout=60, interval=0.02, what=f"{namespace}/{name} Ready")
    return time.monotonic() - started


def issued_within(
    node: client.ApiClient, admin: client.ApiClient, kubelet: FakeKubelet, pod: PodIdentity
) -> float:
    """Post a PodCertificateRequest as the node (whose kubelet watches for
    the answer, which its credentials may not read by name); seconds until
    it is answered."""
    key = ec.generate_private_key(ec.SECP256R1())
    started = time.monotonic()
    created: Any = client.CustomObjectsApi(node).create_namespaced_custom_object(
        PCR_GROUP, PCR_VERSION, pod.namespace, PCR_PLURAL, kubelet.request_body(pod, key)
    )
    name = created["metadata"]["name"]
    reader = client.CustomObjectsApi(admin)

    def answered() -> list[dict[str, Any]] | None:
        body: Any = reader.get_namespaced_custom_object(
            PCR_GROUP, PCR_VERSION, pod.namespace, PCR_PLURAL, name
        )
        return (body.get("status") or {}).get("conditions") or None

    [outcome] = wait_for(answered, timeout=60, interval=0.02, what=f"request {name} answered")
    assert outcome["reason"] == "Issued", outcome
    return time.monotonic() - started


@pytest.fixture
def noisy_operator(
    operator_process: OperatorProcess, tmp_path: Path, kubectl: Kubectl
) -> Iterator[tuple[OperatorProcess, str]]:
    """An operator of its own, leader election on, with a Lease of its own."""
    operator_process.stop()  # the one below is the only operator
    lease = f"noisy-neighbour-{secrets.token_hex(2)}"
    process = OperatorProcess(
        operator_process.kubeconfig,
        tmp_path / "operator.log",
        [
            "--all-namespaces",
            "--bootstrap-ca",
            "--cluster-ca-secret",
            f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
            "--leader-election",
            "--lease-name",
            lease,
            "--lease-namespace",
            OPERATOR_NAMESPACE,
        ],
    )
    process.start()
    try:
        yield process, lease
    finally:
        process.stop()
        kubectl("delete", "lease", lease, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")


def test_a_noisy_tenant_delays_no_one_else(
    noisy_operator: tuple[OperatorProcess, str],
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    tenants: Tenants,
) -> None:
    operator, lease = noisy_operator
    kubelet = FakeKubelet(kubectl, f"node-{tenants.neighbour[-4:]}")
    pod = kubelet.run_pod(tenants.neighbour, "app", "payments")
    node_api = impersonating(tenants.kubeconfig, f"system:node:{kubelet.node}", "system:nodes")
    wait_for(
        lambda: (
            kubectl("get", "lease", lease, "-n", OPERATOR_NAMESPACE, check=False).returncode == 0
        ),
        what="the Lease taken",
    )
    watchdog = Watchdog(operator, kube_api, lease)
    noise = Noise(tenants)
    started = time.monotonic()
    watchdog.start()
    try:
        certificates, requests = [], []
        noise.start()
        try:
            time.sleep(2)  # the noise under way
            for index in range(SAMPLES):
                certificates.append(ready_within(kube_api, tenants.neighbour, f"quiet-{index}"))
                requests.append(issued_within(node_api, kube_api, kubelet, pod))
                time.sleep(1.0)
            measured = time.monotonic() - started
        finally:
            join(noise.stop, noise.threads)
            node_api.close()  # type: ignore[no-untyped-call]
        print(
            f"\nnoisy neighbour: tenant B's certificates Ready in {figures(certificates)}; "
            f"pod certificate requests Issued in {figures(requests)}; measured over the first "
            f"{measured:.0f} s, while tenant A created {CLAIMANTS} claimants of one Secret (in "
            f"{noise.claimants_created or float('nan'):.0f} s), edited its CA's trust bundle "
            f"{noise.ca_edits_made} times and asked {noise.renewals_asked} RSA-4096 renewals"
        )
        refused_all = tenant_a_gets_clear_reasons(kube_api, tenants.noisy) - started
    finally:
        join(watchdog.stop, watchdog.threads)
    print(f"every claimant refused {refused_all:.0f} s after the start; {watchdog.summary()}")
    not_ready = [(round(at - started), status, body) for at, status, body in watchdog.not_ready]
    assert percentile(certificates, 0.95) <= PROMPTLY
    assert percentile(requests, 0.95) <= PROMPTLY
    assert not_ready == []
    assert len(watchdog.holders) == 1
    assert watchdog.transitions == {0}
    assert watchdog.longest_without_renewal() < RENEW_DEADLINE
    assert "lost the Lease" not in operator.log()


def tenant_a_gets_clear_reasons(api: client.ApiClient, ns: str) -> float:
    """Each of tenant A's objects says what is wrong with it; when the last
    of the claimants said so."""
    slow = condition(wait_reason(api, ns, "slow", "CAInvalid"))
    assert slow is not None
    assert "PBKDF2 iteration count 2147483647" in slow["message"]
    huge = condition(wait_reason(api, ns, "huge", "InvalidSpec"))
    assert huge is not None
    assert huge["message"].startswith("spec.secretTemplate.annotations")
    owner = condition(wait_reason(api, ns, "claimant-0", "Issued", 60))
    assert owner is not None
    assert owner["status"] == "True"
    last = condition(wait_reason(api, ns, f"claimant-{CLAIMANTS - 1}", "SecretConflict", 120))
    assert last is not None
    assert last["message"] == (
        "Secret shared-tls is also named by an older certificate, which owns it"
    )
    refused_all = time.monotonic()
    for name in RSA_NAMES:
        rsa = condition(wait_reason(api, ns, name, "Renewed", 60))
        assert rsa is not None
        assert rsa["status"] == "True"
    return refused_all
