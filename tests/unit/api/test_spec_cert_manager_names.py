"""cert-manager's spellings in an MtlsCertificate spec: `usages` and
`keystores.pkcs12.create`. A spec that says the same thing either way is
the same spec, down to its issuance hash, so switching spellings (or
upgrading) re-issues nothing."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_operator.api.spec import InvalidSpec, SecretKeyRef, parse_spec
from mtls_operator.pki import Usage

from support.golden import load_golden
from support.objects import MIN_DURATION, spec_dict

PASSWORD_REF = {"name": "p12-pass", "key": "password"}


def without_usage(**fields: Any) -> dict[str, Any]:
    return spec_dict(usage=None, **fields)


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        (["server auth"], Usage.SERVER),
        (["client auth"], Usage.CLIENT),
        (["server auth", "client auth"], Usage.BOTH),
        (["client auth", "server auth"], Usage.BOTH),
        (["digital signature", "key encipherment", "server auth"], Usage.SERVER),
        (["client auth", "digital signature"], Usage.CLIENT),
        (["server auth", "server auth"], Usage.SERVER),
    ],
)
def test_usages_mean_a_usage(usages: list[str], expected: Usage) -> None:
    spec = parse_spec(without_usage(usages=usages), MIN_DURATION)

    assert spec.request.usage is expected


@pytest.mark.parametrize(
    ("usages", "message"),
    [
        (
            ["server auth", "code signing"],
            'spec.usages[1] "code signing": the operator issues only server auth and client '
            "auth certificates (accepted: server auth, client auth, digital signature, "
            "key encipherment)",
        ),
        (["digital signature"], "spec.usages ['digital signature']: must include server auth"),
        ([], "spec.usages []: must include server auth, client auth or both"),
        ([7], "spec.usages[0] 7: must be a string"),
        ("server auth", 'spec.usages "server auth": must be a list'),
    ],
)
def test_usages_without_a_profile_are_invalid(usages: object, message: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_spec(without_usage(usages=usages), MIN_DURATION)

    assert str(raised.value).startswith(message)


def test_usage_and_usages_together_are_invalid() -> None:
    with pytest.raises(InvalidSpec, match=r"^spec.usages \['server auth'\]: set usage or usages"):
        parse_spec(spec_dict(usage="server", usages=["server auth"]), MIN_DURATION)


def test_neither_usage_nor_usages_is_invalid() -> None:
    with pytest.raises(InvalidSpec, match=r'^spec\.usage "": is required$'):
        parse_spec(without_usage(), MIN_DURATION)


@pytest.mark.parametrize(
    ("usage", "usages"),
    [
        ("server", ["server auth"]),
        ("client", ["digital signature", "client auth"]),
        ("both", ["server auth", "client auth", "key encipherment"]),
    ],
)
def test_usages_hash_as_the_usage_they_mean(usage: str, usages: list[str]) -> None:
    with_usage = parse_spec(spec_dict(usage=usage), MIN_DURATION)
    with_usages = parse_spec(without_usage(usages=usages), MIN_DURATION)

    assert with_usages.issuance_hash() == with_usage.issuance_hash()


def test_usages_hash_as_the_pinned_0_1_0_specs() -> None:
    """Every golden spec, rewritten with usages, keeps the hash 0.1.0 recorded."""
    spelled = {
        "server": ["server auth"],
        "client": ["client auth"],
        "both": ["server auth", "client auth"],
    }
    cases = [(c.spec, c.spec_hash) for c in load_golden().cases]
    assert cases
    for spec, pinned in cases:
        ported = {k: v for k, v in spec.items() if k != "usage"}
        ported["usages"] = spelled[str(spec["usage"])]
        assert parse_spec(ported, MIN_DURATION).issuance_hash() == pinned, spec


@pytest.mark.parametrize(
    ("pkcs12", "expected"),
    [
        ({"passwordSecretRef": PASSWORD_REF}, SecretKeyRef("p12-pass", "password")),
        ({"create": True, "passwordSecretRef": PASSWORD_REF}, SecretKeyRef("p12-pass", "password")),
        ({"create": False, "passwordSecretRef": PASSWORD_REF}, None),
        ({"create": False}, None),
    ],
)
def test_pkcs12_create(pkcs12: dict[str, Any], expected: SecretKeyRef | None) -> None:
    spec = parse_spec(spec_dict(keystores={"pkcs12": pkcs12}), MIN_DURATION)

    assert spec.pkcs12_password == expected
    assert ("keystore.p12" in spec.data_keys) is (expected is not None)


@pytest.mark.parametrize(
    ("pkcs12", "message"),
    [
        ({"create": "yes", "passwordSecretRef": PASSWORD_REF}, 'create "yes": must be true or'),
        ({"create": True}, "passwordSecretRef None: is required"),
    ],
)
def test_pkcs12_create_invalid(pkcs12: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        parse_spec(spec_dict(keystores={"pkcs12": pkcs12}), MIN_DURATION)

    assert str(raised.value).startswith(f"spec.keystores.pkcs12.{message}")


def test_pkcs12_create_false_hashes_as_no_keystore() -> None:
    plain = parse_spec(spec_dict(), MIN_DURATION)
    switched_off = parse_spec(spec_dict(keystores={"pkcs12": {"create": False}}), MIN_DURATION)

    assert switched_off == plain
    assert switched_off.issuance_hash() == plain.issuance_hash()
