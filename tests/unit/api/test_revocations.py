"""Revocations as they are asked for and kept: serials and reasons as users
write them, the annotations of an MtlsCertificate, and each CA's record
(a ConfigMap) written and read back."""

from __future__ import annotations

import datetime
import json
import re

import pytest

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL
from mtls_operator.api.revocations import (
    CRL_KEY,
    REVOKE_REASON_ANNOTATION,
    REVOKE_SERIAL_ANNOTATION,
    STORE_LABEL,
    STORE_SELECTOR,
    RevocationRequestError,
    RevocationStore,
    RevokeRequest,
    StoredRevocation,
    entry_key,
    entry_value,
    parse_reason,
    parse_serial,
    read_store,
    revoke_request,
    revoked_now,
    store_body,
    store_name,
)
from mtls_operator.pki import Revocation, RevocationReason
from mtls_operator.pki.crl import MAX_TWENTY_OCTETS

from support.clock import NOW

td = datetime.timedelta
NAMESPACE = "mtls-system"
STORE = "mtls-operator-ca-revocations"
NOT_AFTER = NOW + td(days=30)
CHOICES = "unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation"


def raises(message: str) -> pytest.RaisesExc[RevocationRequestError]:
    return pytest.raises(RevocationRequestError, match=f"^{re.escape(message)}$")


# --- Serials ---


@pytest.mark.parametrize(
    ("text", "serial"),
    [
        pytest.param("4f1a09", 0x4F1A09, id="hex"),
        pytest.param("4f:1a:09", 0x4F1A09, id="colons"),
        pytest.param("4F:1A:09", 0x4F1A09, id="upper-case"),
        pytest.param("0x4f1a09", 0x4F1A09, id="0x"),
        pytest.param("0X4F1A09", 0x4F1A09, id="0X"),
        pytest.param("  4f:1a:09\n", 0x4F1A09, id="surrounding-space"),
        pytest.param("00:4f:1a:09", 0x4F1A09, id="leading-zero-octet"),
        pytest.param("1", 1, id="one"),
        pytest.param("7f" + "ff" * 19, MAX_TWENTY_OCTETS, id="twenty-octets"),
    ],
)
def test_parse_serial(text: str, serial: int) -> None:
    assert parse_serial(text) == serial


def not_hex(field: str, text: str) -> str:
    return f"{field} {text!r} is not a hexadecimal serial number"


def not_a_serial(field: str, text: str) -> str:
    return f"{field} {text!r} is not a serial number (positive, at most 20 octets)"


TOO_LONG = "80" + "00" * 19  # 2**159: a twenty-first octet for the sign


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        pytest.param("4g", "serial", not_hex("serial", "4g"), id="not-hex"),
        pytest.param("", "serial", not_hex("serial", ""), id="empty"),
        pytest.param("0x", "serial", not_hex("serial", "0x"), id="prefix-only"),
        pytest.param("4f 1a 09", "serial", not_hex("serial", "4f 1a 09"), id="inner-spaces"),
        pytest.param("0", "serial", not_a_serial("serial", "0"), id="zero"),
        pytest.param("00:00", "serial", not_a_serial("serial", "00:00"), id="zero-octets"),
        pytest.param("-1f", "serial", not_a_serial("serial", "-1f"), id="negative"),
        pytest.param(TOO_LONG, "serial", not_a_serial("serial", TOO_LONG), id="over-20-octets"),
        pytest.param("zz", "--serial", not_hex("--serial", "zz"), id="names-the-flag"),
        pytest.param("0", "--serial", not_a_serial("--serial", "0"), id="names-the-flag-zero"),
    ],
)
def test_parse_serial_refuses(text: str, field: str, message: str) -> None:
    with raises(message):
        parse_serial(text, field)


# --- Reasons ---


@pytest.mark.parametrize("text", [None, ""], ids=["none", "empty"])
def test_no_reason_is_unspecified(text: str | None) -> None:
    assert parse_reason(text) is RevocationReason.UNSPECIFIED


@pytest.mark.parametrize("reason", list(RevocationReason), ids=lambda r: r.value)
def test_every_reason_by_its_asn1_name(reason: RevocationReason) -> None:
    assert parse_reason(reason.value) is reason


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("KeyCompromise", "reason", id="other-case"),
        pytest.param("key_compromise", "reason", id="python-name"),
        pytest.param("certificateHold", "--reason", id="not-given-by-the-product"),
    ],
)
def test_parse_reason_refuses_listing_the_choices(text: str, field: str) -> None:
    with raises(f"{field} {text!r} must be one of {CHOICES}"):
        parse_reason(text, field)


# --- What an MtlsCertificate's annotations ask ---


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, None, id="nothing"),
        pytest.param({REVOKE_SERIAL_ANNOTATION: ""}, None, id="empty-serial"),
        pytest.param({REVOKE_REASON_ANNOTATION: "keyCompromise"}, None, id="reason-alone"),
        pytest.param(
            {REVOKE_SERIAL_ANNOTATION: "4f:1a:09"},
            RevokeRequest(0x4F1A09, RevocationReason.UNSPECIFIED),
            id="serial",
        ),
        pytest.param(
            {REVOKE_SERIAL_ANNOTATION: "4F1A09", REVOKE_REASON_ANNOTATION: "keyCompromise"},
            RevokeRequest(0x4F1A09, RevocationReason.KEY_COMPROMISE),
            id="serial-and-reason",
        ),
        pytest.param(
            {REVOKE_SERIAL_ANNOTATION: "4f1a09", REVOKE_REASON_ANNOTATION: ""},
            RevokeRequest(0x4F1A09, RevocationReason.UNSPECIFIED),
            id="empty-reason",
        ),
    ],
)
def test_revoke_request(annotations: dict[str, str], expected: RevokeRequest | None) -> None:
    assert revoke_request(annotations) == expected


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        pytest.param(
            {REVOKE_SERIAL_ANNOTATION: "web-tls"},
            not_hex(REVOKE_SERIAL_ANNOTATION, "web-tls"),
            id="not-hex",
        ),
        pytest.param(
            {REVOKE_SERIAL_ANNOTATION: "0"},
            not_a_serial(REVOKE_SERIAL_ANNOTATION, "0"),
            id="zero",
        ),
        pytest.param(
            {REVOKE_SERIAL_ANNOTATION: "4f1a09", REVOKE_REASON_ANNOTATION: "stolen"},
            f"{REVOKE_REASON_ANNOTATION} 'stolen' must be one of {CHOICES}",
            id="bad-reason",
        ),
    ],
)
def test_a_malformed_request_names_the_annotation(
    annotations: dict[str, str], message: str
) -> None:
    with raises(message):
        revoke_request(annotations)


# --- The record's name ---


def test_store_name_adds_the_suffix() -> None:
    assert store_name("mtls-operator-ca") == STORE


def test_store_name_of_the_longest_ca_secret_name() -> None:
    longest = "a" * (253 - len("-revocations"))
    assert len(store_name(longest)) == 253


def test_store_name_refuses_a_name_too_long_for_a_configmap() -> None:
    name = "a" * (254 - len("-revocations"))
    with raises(
        f"the CA Secret name {name!r} is too long to name its revocations ConfigMap "
        f"{name + '-revocations'!r} (at most 253 characters)"
    ):
        store_name(name)


# --- Entries written and read back ---


def entry(
    serial: int = 0x4F1A09,
    reason: RevocationReason = RevocationReason.KEY_COMPROMISE,
    certificate: str = "shop/web",
) -> StoredRevocation:
    return StoredRevocation(Revocation(serial, NOW, reason, NOT_AFTER), certificate)


def configmap(data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, object]:
    body = store_body(NAMESPACE, STORE, data)
    body["metadata"]["resourceVersion"] = "42"
    if labels is not None:
        body["metadata"]["labels"] = labels
    return body


def test_entry_key_is_the_serial_in_lower_case_hex() -> None:
    assert entry_key(0x4F1A09) == "serial-4f1a09"


def test_entry_value_is_json_with_rfc3339_times() -> None:
    assert json.loads(entry_value(entry())) == {
        "certificate": "shop/web",
        "notAfter": "2026-12-28T12:00:00Z",
        "reason": "keyCompromise",
        "revokedAt": "2026-11-28T12:00:00Z",
    }


def test_an_entry_by_serial_names_no_certificate() -> None:
    assert "certificate" not in json.loads(entry_value(entry(certificate="")))


@pytest.mark.parametrize(
    "stored",
    [
        *[pytest.param(entry(reason=r), id=r.value) for r in RevocationReason],
        pytest.param(entry(certificate=""), id="by-serial"),
        pytest.param(entry(serial=MAX_TWENTY_OCTETS), id="twenty-octets"),
        pytest.param(entry(serial=1), id="serial-one"),
    ],
)
def test_an_entry_written_reads_back_as_itself(stored: StoredRevocation) -> None:
    serial = stored.revocation.serial_number
    store = read_store(configmap({entry_key(serial): entry_value(stored)}))
    assert store.entries == {serial: stored}
    assert store.problems == ()
    assert store.holds(serial)


def test_revoked_now_is_revoked_at_now() -> None:
    stored = revoked_now(0x1F, RevocationReason.SUPERSEDED, NOT_AFTER, NOW, "shop/web")
    assert stored == StoredRevocation(
        Revocation(0x1F, NOW, RevocationReason.SUPERSEDED, NOT_AFTER), "shop/web"
    )


def test_read_store_reads_the_metadata_and_the_crl() -> None:
    store = read_store(configmap({CRL_KEY: "-----BEGIN X509 CRL-----\n", "note": "by hand"}))
    assert store == RevocationStore(
        namespace=NAMESPACE,
        name=STORE,
        resource_version="42",
        managed=True,
        entries={},
        crl_pem="-----BEGIN X509 CRL-----\n",
    )


def test_an_empty_configmap_is_an_empty_unmanaged_record() -> None:
    store = read_store({"metadata": {"namespace": NAMESPACE, "name": STORE}})
    assert (store.managed, store.entries, store.crl_pem, store.problems) == (False, {}, "", ())


@pytest.mark.parametrize(
    ("labels", "managed"),
    [
        pytest.param({MANAGED_BY_LABEL: "mtls-operator", STORE_LABEL: "true"}, True, id="ours"),
        pytest.param({MANAGED_BY_LABEL: "mtls-operator"}, True, id="managed-label-alone"),
        pytest.param({STORE_LABEL: "true"}, False, id="no-managed-label"),
        pytest.param({MANAGED_BY_LABEL: "helm", STORE_LABEL: "true"}, False, id="other-manager"),
    ],
)
def test_managed_is_read_from_the_managed_by_label(labels: dict[str, str], managed: bool) -> None:
    assert read_store(configmap({}, labels)).managed is managed


def value(**fields: object) -> str:
    written: dict[str, object] = {
        "revokedAt": "2026-11-28T12:00:00Z",
        "notAfter": "2026-12-28T12:00:00Z",
        "reason": "keyCompromise",
    }
    written.update(fields)
    return json.dumps({k: v for k, v in written.items() if v is not None})


@pytest.mark.parametrize(
    ("key", "text", "problem"),
    [
        pytest.param(
            "serial-web",
            value(),
            "serial-web: key 'web' is not a hexadecimal serial number",
            id="key-not-hex",
        ),
        pytest.param(
            "serial-0",
            value(),
            "serial-0: key '0' is not a serial number (positive, at most 20 octets)",
            id="key-zero",
        ),
        pytest.param(
            "serial-1f",
            "{revokedAt: now}",
            "serial-1f: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
            id="not-json",
        ),
        pytest.param("serial-1f", "[]", "serial-1f: not a JSON object", id="json-array"),
        pytest.param(
            "serial-1f",
            value(revokedAt=None),
            "serial-1f: revokedAt and notAfter must be RFC 3339 times",
            id="no-revoked-at",
        ),
        pytest.param(
            "serial-1f",
            value(notAfter=None),
            "serial-1f: revokedAt and notAfter must be RFC 3339 times",
            id="no-not-after",
        ),
        pytest.param(
            "serial-1f",
            value(notAfter="next year"),
            "serial-1f: revokedAt and notAfter must be RFC 3339 times",
            id="not-a-time",
        ),
        pytest.param(
            "serial-1f",
            value(reason="stolen"),
            f"serial-1f: reason 'stolen' must be one of {CHOICES}",
            id="unknown-reason",
        ),
    ],
)
def test_an_entry_that_cannot_be_read_is_a_problem_and_skipped(
    key: str, text: str, problem: str
) -> None:
    kept = entry(0x2A)
    store = read_store(configmap({key: text, entry_key(0x2A): entry_value(kept)}))
    assert store.problems == (problem,)
    assert store.entries == {0x2A: kept}


def test_every_unreadable_entry_is_named() -> None:
    store = read_store(configmap({"serial-1f": "[]", "serial-2a": "{}", CRL_KEY: ""}))
    assert [problem.partition(":")[0] for problem in store.problems] == ["serial-1f", "serial-2a"]
    assert store.entries == {}


def test_an_entry_written_by_hand_is_read_with_its_defaults() -> None:
    """Written without the operator: upper-case hex, no reason, no certificate,
    a time with an offset."""
    text = json.dumps({"revokedAt": "2026-11-28T13:00:00+01:00", "notAfter": "2026-12-28T12:00:00"})
    store = read_store(configmap({"serial-4F1A09": text}))
    assert store.entries == {
        0x4F1A09: StoredRevocation(
            Revocation(0x4F1A09, NOW, RevocationReason.UNSPECIFIED, NOT_AFTER), ""
        )
    }


def test_keys_that_are_not_entries_are_ignored() -> None:
    store = read_store(
        configmap({CRL_KEY: "", "README": "revocations of the cluster CA", "serial": "{}"})
    )
    assert (store.entries, store.problems) == ({}, ())


# --- The record as written ---


def test_store_body_is_a_configmap_the_selector_finds() -> None:
    body = store_body(NAMESPACE, STORE, {entry_key(0x1F): entry_value(entry(0x1F))})
    assert body == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": STORE,
            "namespace": NAMESPACE,
            "labels": {MANAGED_BY_LABEL: "mtls-operator", STORE_LABEL: "true"},
        },
        "data": {"serial-1f": entry_value(entry(0x1F))},
    }
    selected = dict(term.split("=") for term in STORE_SELECTOR["labelSelector"].split(","))
    assert selected == body["metadata"]["labels"]
    assert read_store(body).managed


def test_store_body_copies_the_data() -> None:
    data = {CRL_KEY: ""}
    body = store_body(NAMESPACE, STORE, data)
    data["serial-1f"] = "{}"
    assert body["data"] == {CRL_KEY: ""}
