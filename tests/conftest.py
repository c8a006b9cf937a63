from __future__ import annotations

import datetime

import pytest

from mtls_operator.pki import CertificateAuthority

from support.authorities import make_ca
from support.clock import NOW


@pytest.fixture
def now() -> datetime.datetime:
    return NOW


@pytest.fixture(scope="session")
def ecdsa_ca() -> CertificateAuthority:
    return make_ca()
