"""A changed keystore password is drift: the keystores are encrypted again,
the certificate is kept. A Secret that records no password (written before
the digest was) is taken as it is."""

from __future__ import annotations

from mtls_operator.api.managed_secret import (
    KEYSTORE_PASSWORD_ANNOTATION,
    keystore_password_digest,
    read_secret,
)
from mtls_operator.policy import certificate as policy

from support.authorities import make_ca
from support.clock import NOW
from support.objects import CERTIFICATE, certificate_spec, secret_body, with_metadata

CA = make_ca()
SPEC = certificate_spec(keystores={"pkcs12": {"passwordSecretRef": {"name": "p12"}}})
BODY = secret_body(SPEC, CA, pkcs12_password=b"old")
SERIAL = BODY["metadata"]["annotations"]["mtls.dev/serial"]


def decide(annotation: str | None, current: bytes | None) -> policy.Decision:
    body = with_metadata(BODY, annotations={KEYSTORE_PASSWORD_ANNOTATION: annotation})
    digest = keystore_password_digest(SERIAL, current) if current is not None else None
    return policy.decide(
        policy.Input(
            certificate=CERTIFICATE,
            spec=SPEC,
            secret=read_secret(body),
            ca=CA,
            now=NOW,
            keystore_password=digest,
        )
    )


def test_a_new_password_re_encrypts_the_keystores_without_issuing() -> None:
    decision = decide(keystore_password_digest(SERIAL, b"old"), b"new")
    assert isinstance(decision, policy.Repair)
    assert decision.items == (policy.Drift.KEYSTORE_PASSWORD,)


def test_the_same_password_is_up_to_date() -> None:
    assert isinstance(decide(keystore_password_digest(SERIAL, b"old"), b"old"), policy.UpToDate)


def test_a_secret_that_records_no_password_is_kept_as_it_is() -> None:
    assert isinstance(decide(None, b"new"), policy.UpToDate)


def test_a_password_that_cannot_be_read_keeps_the_keystores() -> None:
    assert isinstance(decide(keystore_password_digest(SERIAL, b"old"), None), policy.UpToDate)


def test_the_digest_is_salted_with_the_serial() -> None:
    assert keystore_password_digest("1", b"pw") != keystore_password_digest("2", b"pw")
    assert b"pw".hex() not in keystore_password_digest("1", b"pw")
