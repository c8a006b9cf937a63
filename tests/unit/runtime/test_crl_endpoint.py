"""What the CRL endpoint reads and serves: only the operator's records, each
read at most once per CACHE_SECONDS, and the DER inside the stored PEM."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from cryptography import x509

from mtls_operator.api.revocations import CRL_KEY, store_body
from mtls_operator.api.trust_bundles import configmaps_path
from mtls_operator.pki import CertificateAuthority, crl_to_pem, sign_crl
from mtls_operator.runtime.crl_endpoint import CACHE_SECONDS, CRLReader, pem_body

from support.clock import NOW
from support.fake_api import FakeKube

RECORD = configmaps_path("ops", "ca-revocations")


def signed_pem(ca: CertificateAuthority) -> str:
    der = sign_crl(ca, [], number=1, this_update=NOW, next_update=NOW + datetime.timedelta(days=7))
    return crl_to_pem(der).decode()


def test_the_der_inside_the_pem_is_the_crl(ecdsa_ca: CertificateAuthority) -> None:
    pem = signed_pem(ecdsa_ca)
    der = pem_body(pem)
    assert der is not None
    assert x509.load_der_x509_crl(der) == x509.load_pem_x509_crl(pem.encode())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a crl",
        "-----BEGIN X509 CRL-----\n!!!\n-----END X509 CRL-----",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
    ],
)
def test_what_is_not_one_pem_crl_gives_nothing(text: str) -> None:
    assert pem_body(text) is None


def test_records_are_read_once_per_interval_and_only_the_operators(
    ecdsa_ca: CertificateAuthority,
) -> None:
    kube = FakeKube()
    now = [0.0]
    reader = CRLReader(kube, clock=lambda: now[0])
    pem = signed_pem(ecdsa_ca)
    kube.put(RECORD, store_body("ops", "ca-revocations", {CRL_KEY: pem}))
    kube.put(
        configmaps_path("ops", "foreign-revocations"),
        {"metadata": {"name": "foreign-revocations"}, "data": {CRL_KEY: pem}},
    )

    async def scenario() -> list[str | None]:
        found = [await reader("ops", "ca"), await reader("ops", "ca")]
        kube.objects.pop(RECORD)
        found.append(await reader("ops", "ca"))  # kept: read less than CACHE_SECONDS ago
        now[0] += CACHE_SECONDS
        found += [await reader("ops", "ca"), await reader("ops", "foreign")]
        return found

    assert asyncio.run(scenario()) == [pem, pem, pem, None, None]
    assert kube.reads.count(RECORD) == 2
