"""A tenant cannot stall or blind the operator for everyone else. Acting as
a user who is admin of one namespace only (Kubernetes' `admin` role, real
RBAC through `kubectl --as`), it makes what costs the operator the most it
can choose: a CA key whose derivation would take minutes, a certificate and
a labelled Secret as large as the API server stores, and edits of each.
Each of its own objects gets a reason that names what is wrong; a new
certificate in another namespace is Ready within seconds all along."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator

import pytest
from kubernetes import client

from mtls_operator.pki import certificates_to_pem

from e2e.tenants import (
    LARGE,
    MANAGED_BY,
    Tenants,
    create_as_tenant,
    noisy_and_neighbour,
    secret,
)
from localcluster import Kubectl
from operator_process import OperatorProcess
from support import encrypted_keys
from support.authorities import make_ca
from support.cluster import (
    KubeCluster,
    certificate,
    condition,
    create_certificate,
    wait_ready,
    wait_reason,
)

# A certificate of another namespace applied meanwhile is Ready within this.
PROMPTLY = 15.0


@pytest.fixture(scope="module")
def tenants(kube_cluster: KubeCluster, kubectl: Kubectl, mtls_crd: None) -> Iterator[Tenants]:
    with noisy_and_neighbour(kubectl, kube_cluster.kubeconfig) as made:
        yield made


def neighbour_is_ready_promptly(api: client.ApiClient, tenants: Tenants, name: str) -> None:
    ns = tenants.neighbour
    create_certificate(api, ns, certificate(name, "server", dnsNames=[f"{name}.{ns}.svc"]))
    wait_ready(api, ns, name, timeout=PROMPTLY)


def edit_as_tenant(tenants: Tenants, kind: str, name: str, times: int) -> None:
    for edit in range(times):
        tenants.as_noisy("label", kind, name, "-n", tenants.noisy, f"edit={edit}", "--overwrite")


def test_a_ca_key_that_takes_minutes_to_open_is_refused_and_stalls_no_one(
    operator: OperatorProcess, kube_api: client.ApiClient, tenants: Tenants
) -> None:
    ca = make_ca(common_name="Noisy CA", now=datetime.datetime.now(datetime.UTC)).certificate
    # The largest PBKDF2 iteration count: minutes of CPU to derive, for a
    # key that is noise (its passphrase is irrelevant: nothing opens it).
    header = encrypted_keys.pbes2(encrypted_keys.pbkdf2(2**31 - 1, os.urandom(16)), os.urandom(16))
    create_as_tenant(tenants, secret("slow-pass", {"passphrase": b"anything"}))
    create_as_tenant(
        tenants,
        secret(
            "slow-ca",
            {
                "tls.crt": certificates_to_pem([ca]),
                "tls.key": encrypted_keys.unopenable(header),
            },
            annotations={"mtls.dev/passphrase-secret": "slow-pass"},
        ),
    )
    create_as_tenant(
        tenants,
        certificate(
            "slow", "server", caSecretName="slow-ca", dnsNames=[f"slow.{tenants.noisy}.svc"]
        ),
    )
    neighbour_is_ready_promptly(kube_api, tenants, "beside-slow-ca")
    body = wait_reason(kube_api, tenants.noisy, "slow", "CAInvalid", timeout=PROMPTLY)
    ready = condition(body)
    assert ready is not None
    assert ready["message"] == (
        f"CA Secret {tenants.noisy}/slow-ca: the CA key is unusable: the private key's PBKDF2 "
        "iteration count 2147483647 is more than the 1000000 accepted (re-encrypt it: "
        "openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 100000)"
    )
    # Every edit of either Secret reads the CA again: none costs anything.
    edit_as_tenant(tenants, "secret", "slow-ca", 5)
    edit_as_tenant(tenants, "secret", "slow-pass", 5)
    neighbour_is_ready_promptly(kube_api, tenants, "after-slow-ca-edits")


def test_objects_as_large_as_the_api_server_stores_blind_no_watch(
    operator: OperatorProcess, kube_api: client.ApiClient, tenants: Tenants
) -> None:
    ns = tenants.noisy
    create_as_tenant(
        tenants,
        certificate(
            "huge",
            "server",
            dnsNames=[f"huge.{ns}.svc"],
            secretTemplate={"annotations": {"note": "x" * LARGE}},
        ),
    )
    create_as_tenant(tenants, secret("huge-secret", {"blob": os.urandom(LARGE)}, labels=MANAGED_BY))
    neighbour_is_ready_promptly(kube_api, tenants, "beside-large-objects")
    body = wait_reason(kube_api, ns, "huge", "InvalidSpec", timeout=PROMPTLY)
    ready = condition(body)
    assert ready is not None
    assert ready["message"] == (
        f'spec.secretTemplate.annotations "{LARGE + len("note")} bytes": is more than the '
        "258048 bytes a Secret takes besides the operator's own annotations"
    )
    # Each edit sends the whole object down every watch of its kind again.
    edit_as_tenant(tenants, "mtlscertificate", "huge", 3)
    edit_as_tenant(tenants, "secret", "huge-secret", 3)
    neighbour_is_ready_promptly(kube_api, tenants, "after-large-edits")
