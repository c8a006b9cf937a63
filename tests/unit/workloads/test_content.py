"""What a workload's pods should run, and whether a roll for it is still
pending: the one reading the workload controller rolls by and `ca rotate`
waits on."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from mtls_operator.api.managed_secret import SecretFacts
from mtls_operator.api.trust_bundles import Published
from mtls_operator.api.workloads import MOUNTED_DIGEST_ANNOTATION, WorkloadKind
from mtls_operator.pki import CertificateAuthority
from mtls_operator.policy.rollout import Mounted, digest
from mtls_operator.runtime.kube import ObjectKey
from mtls_operator.workloads.content import mounted_content, roll_pending
from mtls_operator.workloads.mounts import Mounts

from support.objects import certificate_spec, secret_facts
from support.workloads import rolled_out, workload_body

NAMESPACE = "shop"
BUNDLE = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"


@pytest.fixture
def secret(ecdsa_ca: CertificateAuthority) -> SecretFacts:
    return secret_facts(certificate_spec(secretName="web-tls"), ecdsa_ca)


def lookup(**found: Any) -> Any:
    def of(key: ObjectKey) -> Any:
        namespace, name = key
        return found.get(name) if namespace == NAMESPACE else None

    return of


def wanted(secret: SecretFacts) -> Mounted:
    assert secret.leaf is not None
    return Mounted.secret("web-tls", secret.leaf.serial_number, secret.trust_bundle_sha256 or "")


def test_the_content_is_each_managed_secret_and_bundle_mounted(secret: SecretFacts) -> None:
    mounts = Mounts(frozenset({"web-tls", "db-password"}), frozenset({"mtls-ca-bundle", "conf"}))
    bundle = Published(resource_version="1", managed=True, bundle=BUNDLE)
    unmanaged = Published(resource_version="1", managed=False, bundle="x")
    found = mounted_content(
        NAMESPACE,
        mounts,
        lookup(**{"web-tls": secret}),
        lookup(**{"mtls-ca-bundle": bundle, "conf": unmanaged}),
    )
    fingerprint = hashlib.sha256(BUNDLE.encode()).hexdigest()
    assert found == (wanted(secret), Mounted.trust_bundle("mtls-ca-bundle", fingerprint))


@pytest.mark.parametrize(
    ("keys", "rolls"),
    [
        pytest.param(None, True, id="the whole bundle"),
        pytest.param(frozenset({"ca.crt", "ca.crl"}), True, id="roots and CRL"),
        pytest.param(frozenset({"ca.crl"}), True, id="the CRL only"),
        pytest.param(frozenset({"ca.crt"}), False, id="the roots only"),
    ],
)
def test_a_new_crl_changes_the_content_of_pods_that_read_it(
    keys: frozenset[str] | None, rolls: bool
) -> None:
    partly = () if keys is None else (("mtls-ca-bundle", keys),)
    mounts = Mounts(config_maps=frozenset({"mtls-ca-bundle"}), config_map_keys=partly)

    def content(crl: str) -> Any:
        bundle = Published(resource_version="1", managed=True, bundle=BUNDLE, crl=crl)
        return mounted_content(NAMESPACE, mounts, lookup(), lookup(**{"mtls-ca-bundle": bundle}))

    assert (content("CRL 1") != content("CRL 2")) is rolls


def test_pods_reading_only_the_roots_keep_the_digest_of_a_bundle_without_a_crl() -> None:
    """What was recorded before CRLs were published beside the roots."""
    mounts = Mounts(
        config_maps=frozenset({"mtls-ca-bundle"}),
        config_map_keys=(("mtls-ca-bundle", frozenset({"ca.crt"})),),
    )
    before = Published(resource_version="1", managed=True, bundle=BUNDLE)
    after = dataclasses.replace(before, crl="-----BEGIN X509 CRL-----\n")
    assert mounted_content(
        NAMESPACE, mounts, lookup(), lookup(**{"mtls-ca-bundle": after})
    ) == mounted_content(
        NAMESPACE,
        Mounts(config_maps=mounts.config_maps),
        lookup(),
        lookup(**{"mtls-ca-bundle": before}),
    )


def test_a_secret_being_repaired_leaves_the_content_unknown(secret: SecretFacts) -> None:
    broken = dataclasses.replace(secret, leaf=None, problem="tls.crt is missing")
    mounts = Mounts(frozenset({"web-tls"}))
    assert mounted_content(NAMESPACE, mounts, lookup(**{"web-tls": broken}), lookup()) is None


def follower(recorded: str | None, *, rolling: bool = False, follows: bool = True) -> Any:
    body = workload_body("web", namespace=NAMESPACE, secrets=["web-tls"], follows=follows)
    body = rolled_out(body)
    if rolling:
        body["metadata"]["generation"] = 2  # a spec its controller has not seen yet
    if recorded is not None:
        body["metadata"].setdefault("annotations", {})[MOUNTED_DIGEST_ANNOTATION] = recorded
    return body


@dataclasses.dataclass(frozen=True)
class Case:
    recorded: str | None  # "current", "stale", or never recorded
    pending: bool
    rolling: bool = False
    follows: bool = True
    repaired: bool = False


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(Case("current", pending=False), id="rolled for what it mounts"),
        pytest.param(Case("stale", pending=True), id="not rolled yet"),
        pytest.param(Case("current", pending=True, rolling=True), id="its rollout under way"),
        pytest.param(Case(None, pending=False), id="never recorded: never rolled"),
        pytest.param(Case("stale", pending=False, follows=False), id="does not follow reloads"),
        pytest.param(Case("current", pending=True, repaired=True), id="a Secret being repaired"),
    ],
)
def test_a_roll_is_pending_until_the_operator_rolled_for_what_is_mounted_and_it_rolled_out(
    secret: SecretFacts, case: Case
) -> None:
    current = digest([wanted(secret)])
    digests = {"current": current, "stale": "0" * len(current), None: None}
    mounted_secret = dataclasses.replace(secret, leaf=None) if case.repaired else secret
    body = follower(digests[case.recorded], rolling=case.rolling, follows=case.follows)
    found = roll_pending(
        body, WorkloadKind.DEPLOYMENT, lookup(**{"web-tls": mounted_secret}), lookup()
    )
    assert found is case.pending
