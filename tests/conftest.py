from __future__ import annotations

import datetime

import pytest

from mtls_operator.pki import CertificateAuthority, KeySpec, create_root_ca, load_ca
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


@pytest.fixture
def now() -> datetime.datetime:
    return NOW


DEFAULT_KEY = KeySpec()


def make_ca(
    key_spec: KeySpec = DEFAULT_KEY,
    common_name: str = "Test Root CA",
    now: datetime.datetime = NOW,
    lifetime: datetime.timedelta = datetime.timedelta(days=3650),
) -> CertificateAuthority:
    key = key_spec.generate()
    certificate = create_root_ca(key, common_name, now, lifetime)
    return load_ca(certificates_to_pem([certificate]), private_key_to_pem(key), now)


@pytest.fixture(scope="session")
def ecdsa_ca() -> CertificateAuthority:
    return make_ca()
