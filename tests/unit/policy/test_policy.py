from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest

from mtls_operator.api.managed_secret import (
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    MANAGED_BY_LABEL,
    RENEWAL_REQUEST_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    TEMPLATE_LABELS_ANNOTATION,
    read_secret,
)
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.revocations import RevocationRequestError, RevokeRequest
from mtls_operator.api.spec import CertificateSpec
from mtls_operator.api.status import Reason
from mtls_operator.pki import CertificateAuthority, KeySpec, RevocationReason
from mtls_operator.pki.keys import private_key_to_pem
from mtls_operator.policy import certificate as policy
from mtls_operator.policy import renewal
from mtls_operator.policy.identity import IdentityRules
from mtls_operator.policy.violation import Violation

from support.authorities import make_ca, with_next_root
from support.clock import NOW
from support.objects import CERTIFICATE, certificate_spec, secret_body, with_data, with_metadata

td = datetime.timedelta
# The base certificate is issued at NOW for the default 2160h by a CA that
# lives ten years, so nothing is cut short.
NOT_AFTER = NOW + td(hours=2160)
RENEW_BEFORE = td(hours=720)


@dataclass(frozen=True)
class World:
    ca: CertificateAuthority
    other_ca: CertificateAuthority  # another subject, another key
    same_name_ca: CertificateAuthority  # the same subject, another key
    spec: CertificateSpec
    body: dict[str, Any]  # the Secret the operator wrote at NOW

    def given(
        self,
        body: Mapping[str, Any] | None,
        *,
        spec: CertificateSpec | None = None,
        ca: CertificateAuthority | None = None,
        now: datetime.datetime = NOW,
        certificate: CertificateRef = CERTIFICATE,
        older_claimant: str | None = None,
    ) -> policy.Input:
        return policy.Input(
            certificate=certificate,
            spec=spec or self.spec,
            secret=read_secret(body) if body is not None else None,
            ca=ca or self.ca,
            now=now,
            older_claimant=older_claimant,
        )

    def issued_by(self, ca: CertificateAuthority, **options: Any) -> dict[str, Any]:
        return secret_body(self.spec, ca, **options)


@pytest.fixture(scope="module")
def world(ecdsa_ca: CertificateAuthority) -> World:
    spec = certificate_spec()
    return World(
        ca=ecdsa_ca,
        other_ca=make_ca(common_name="Other Root CA"),
        same_name_ca=make_ca(common_name="Test Root CA"),
        spec=spec,
        body=secret_body(spec, ecdsa_ca),
    )


def requesting(value: str) -> CertificateRef:
    """The certificate with its renew-requested-at annotation set to `value`."""
    return replace(CERTIFICATE, renewal_request=value)


def honouring(body: Mapping[str, Any], value: str | None) -> dict[str, Any]:
    """The Secret as if its last issuance had honoured the request `value`."""
    return with_metadata(body, annotations={RENEWAL_REQUEST_ANNOTATION: value})


# Requests as a client writes them: its own clock, whatever the operator's says.
REQUEST = "2026-11-28T13:00:00Z"  # an hour after NOW
EARLIER_REQUEST = "2026-11-28T11:00:00Z"
FUTURE_REQUEST = "2027-01-01T00:00:00Z"  # a client clock far ahead


def another_key_pem() -> bytes:
    return private_key_to_pem(KeySpec().generate())


Case = Callable[[World], policy.Input]

# --- Blocking checks ---

OLDER_CLAIMANT_CASES: list[tuple[str, Case, Violation | None]] = [
    ("no-other-claimant", lambda w: w.given(w.body), None),
    (
        "older-claimant",
        lambda w: w.given(w.body, older_claimant="payments-old"),
        Violation(
            Reason.SECRET_CONFLICT,
            "Secret payments-tls is also named by an older certificate, which owns it",
        ),
    ),
    (
        "older-claimant-without-secret",
        lambda w: w.given(None, older_claimant="payments-old"),
        Violation(
            Reason.SECRET_CONFLICT,
            "Secret payments-tls is also named by an older certificate, which owns it",
        ),
    ),
]

UNMANAGED = Violation(
    Reason.SECRET_CONFLICT,
    "Secret payments-tls exists and is not managed by mtls-operator; it is left untouched "
    "(delete it or choose another secretName)",
    # Foreign Secrets are not watched: looked at again until it is gone.
    retry=True,
)
UNMANAGED_SECRET_CASES: list[tuple[str, Case, Violation | None]] = [
    ("no-secret", lambda w: w.given(None), None),
    ("managed", lambda w: w.given(w.body), None),
    (
        "no-label",
        lambda w: w.given(with_metadata(w.body, labels={MANAGED_BY_LABEL: None})),
        UNMANAGED,
    ),
    (
        "other-manager",
        lambda w: w.given(with_metadata(w.body, labels={MANAGED_BY_LABEL: "cert-manager"})),
        UNMANAGED,
    ),
]


def short_lived_ca() -> CertificateAuthority:
    return make_ca(common_name="Short CA", lifetime=td(days=1))


CA_EXPIRED_CASES: list[tuple[str, Case, Violation | None]] = [
    ("valid", lambda w: w.given(w.body), None),
    ("at-not-after", lambda w: w.given(None, ca=short_lived_ca(), now=NOW + td(days=1)), None),
    (
        "after-not-after",
        lambda w: w.given(None, ca=short_lived_ca(), now=NOW + td(days=1, seconds=1)),
        Violation(Reason.CA_INVALID, "the CA 'CN=Short CA' expired at 2026-11-29T12:00:00+00:00"),
    ),
]


@pytest.mark.parametrize(
    ("check", "case", "expected"),
    [
        *[
            pytest.param(policy.older_claimant, c, e, id=f"older_claimant-{i}")
            for i, c, e in OLDER_CLAIMANT_CASES
        ],
        *[
            pytest.param(policy.unmanaged_secret, c, e, id=f"unmanaged_secret-{i}")
            for i, c, e in UNMANAGED_SECRET_CASES
        ],
        *[
            pytest.param(policy.ca_expired, c, e, id=f"ca_expired-{i}")
            for i, c, e in CA_EXPIRED_CASES
        ],
    ],
)
def test_blocking_check(
    world: World, check: policy.Check, case: Case, expected: Violation | None
) -> None:
    assert check(case(world)) == expected


# --- Issuance triggers ---

SECRET_MISSING_CASES: list[tuple[str, Case, Violation | None]] = [
    ("present", lambda w: w.given(w.body), None),
    (
        "absent",
        lambda w: w.given(None),
        Violation(policy.Trigger.SECRET_MISSING, "Secret payments-tls does not exist"),
    ),
]

SECRET_INVALID_CASES: list[tuple[str, Case, Violation | None]] = [
    ("good", lambda w: w.given(w.body), None),
    ("absent", lambda w: w.given(None), None),
    (
        "no-certificate",
        lambda w: w.given(with_data(w.body, {"tls.crt": None})),
        Violation(
            policy.Trigger.SECRET_INVALID, "Secret payments-tls: tls.crt is missing or empty"
        ),
    ),
    (
        "no-key",
        lambda w: w.given(with_data(w.body, {"tls.key": b""})),
        Violation(
            policy.Trigger.SECRET_INVALID, "Secret payments-tls: tls.key is missing or empty"
        ),
    ),
    (
        "no-bundle",
        lambda w: w.given(with_data(w.body, {"ca.crt": None})),
        Violation(policy.Trigger.SECRET_INVALID, "Secret payments-tls: ca.crt is missing or empty"),
    ),
    (
        "garbage-certificate",
        lambda w: w.given(with_data(w.body, {"tls.crt": b"hello"})),
        Violation(
            policy.Trigger.SECRET_INVALID,
            "Secret payments-tls: tls.crt is not a certificate: the data is neither a PEM nor a DER certificate",
        ),
    ),
]

KEY_MISMATCH_CASES: list[tuple[str, Case, Violation | None]] = [
    ("matching", lambda w: w.given(w.body), None),
    ("absent", lambda w: w.given(None), None),
    (
        "another-key",
        lambda w: w.given(with_data(w.body, {"tls.key": another_key_pem()})),
        Violation(
            policy.Trigger.KEY_MISMATCH, "tls.key does not belong to the certificate in tls.crt"
        ),
    ),
]


def renewed_ca_same_key(ca: CertificateAuthority) -> CertificateAuthority:
    return make_ca(key=ca.private_key, now=NOW + td(days=1))


ISSUER_CHANGED_CASES: list[tuple[str, Case, Violation | None]] = [
    ("same-ca", lambda w: w.given(w.body), None),
    ("absent", lambda w: w.given(None), None),
    ("no-certificate", lambda w: w.given(with_data(w.body, {"tls.crt": None})), None),
    (
        "ca-certificate-renewed-with-same-key",
        lambda w: w.given(w.body, ca=renewed_ca_same_key(w.ca), now=NOW + td(days=1)),
        None,
    ),
    (
        "other-ca",
        lambda w: w.given(w.issued_by(w.other_ca)),
        Violation(
            policy.Trigger.ISSUER_CHANGED,
            "the certificate was not issued by the current CA 'CN=Test Root CA'",
        ),
    ),
    (
        "same-subject-other-key",
        lambda w: w.given(w.body, ca=w.same_name_ca),
        Violation(
            policy.Trigger.ISSUER_CHANGED,
            "the certificate was not issued by the current CA 'CN=Test Root CA'",
        ),
    ),
]

SPEC_CHANGED = Violation(policy.Trigger.SPEC_CHANGED, "the certificate no longer matches the spec")
SPEC_CHANGED_CASES: list[tuple[str, Case, Violation | None]] = [
    ("same-spec", lambda w: w.given(w.body), None),
    ("absent", lambda w: w.given(None), None),
    (
        "renew-before-only",
        lambda w: w.given(w.body, spec=certificate_spec(renewBefore="24h")),
        None,
    ),
    (
        "template-only",
        lambda w: w.given(w.body, spec=certificate_spec(secretTemplate={"labels": {"a": "b"}})),
        None,
    ),
    (
        "dns-names",
        lambda w: w.given(w.body, spec=certificate_spec(dnsNames=["payments"])),
        SPEC_CHANGED,
    ),
    ("usage", lambda w: w.given(w.body, spec=certificate_spec(usage="both")), SPEC_CHANGED),
    (
        "key-size",
        lambda w: w.given(w.body, spec=certificate_spec(privateKey={"size": 384})),
        SPEC_CHANGED,
    ),
    (
        "hash-annotation-removed",
        lambda w: w.given(with_metadata(w.body, annotations={SPEC_HASH_ANNOTATION: None})),
        SPEC_CHANGED,
    ),
]

EXPIRED_CASES: list[tuple[str, Case, Violation | None]] = [
    ("valid", lambda w: w.given(w.body, now=NOT_AFTER - td(seconds=1)), None),
    ("absent", lambda w: w.given(None, now=NOT_AFTER + td(days=1)), None),
    (
        "at-not-after",
        lambda w: w.given(w.body, now=NOT_AFTER),
        Violation(policy.Trigger.EXPIRED, "the certificate expired at 2027-02-26T12:00:00+00:00"),
    ),
]


def due(world: World) -> datetime.datetime:
    return renewal.renewal_due_at(world.spec, NOW, NOT_AFTER, CERTIFICATE.uid)


RENEWAL_DUE_CASES: list[tuple[str, Case, Violation | None]] = [
    ("just-issued", lambda w: w.given(w.body), None),
    ("absent", lambda w: w.given(None, now=NOT_AFTER), None),
    # The jitter is at most an hour, so renewal is due between 721h and 720h before notAfter.
    ("before-window", lambda w: w.given(w.body, now=NOT_AFTER - RENEW_BEFORE - td(hours=1)), None),
    ("just-before-due", lambda w: w.given(w.body, now=due(w) - td(microseconds=1)), None),
]


@pytest.mark.parametrize("offset", [td(0), td(hours=1)], ids=["at-due", "after-due"])
def test_renewal_due_from_renewal_time(world: World, offset: td) -> None:
    at = due(world)
    assert NOT_AFTER - RENEW_BEFORE - td(hours=1) < at <= NOT_AFTER - RENEW_BEFORE
    assert policy.renewal_due(world.given(world.body, now=at + offset)) == Violation(
        policy.Trigger.RENEWAL_DUE, f"renewal was due at {at.isoformat()}"
    )


MANUAL_RENEWAL_CASES: list[tuple[str, Case, Violation | None]] = [
    ("not-requested", lambda w: w.given(w.body), None),
    ("not-requested-after-an-honoured-one", lambda w: w.given(honouring(w.body, REQUEST)), None),
    ("absent", lambda w: w.given(None, certificate=requesting(REQUEST)), None),
    (
        "requested",
        lambda w: w.given(w.body, certificate=requesting(REQUEST)),
        Violation(policy.Trigger.MANUAL_RENEWAL, "renewal was requested at 2026-11-28T13:00:00Z"),
    ),
    (
        "honoured",
        lambda w: w.given(honouring(w.body, REQUEST), certificate=requesting(REQUEST)),
        None,
    ),
    (
        "another-request-honoured",
        lambda w: w.given(honouring(w.body, EARLIER_REQUEST), certificate=requesting(REQUEST)),
        Violation(policy.Trigger.MANUAL_RENEWAL, "renewal was requested at 2026-11-28T13:00:00Z"),
    ),
    # Not a time comparison: a request dated before the issuance that did not
    # honour it still asks for one...
    (
        "dated-before-issuance-not-honoured",
        lambda w: w.given(w.body, certificate=requesting(EARLIER_REQUEST)),
        Violation(policy.Trigger.MANUAL_RENEWAL, "renewal was requested at 2026-11-28T11:00:00Z"),
    ),
    # ...and one dated in the future is honoured once, not until that time.
    (
        "dated-in-the-future-honoured",
        lambda w: w.given(
            honouring(w.body, FUTURE_REQUEST), certificate=requesting(FUTURE_REQUEST)
        ),
        None,
    ),
    (
        "not-a-timestamp",
        lambda w: w.given(w.body, certificate=requesting("please")),
        Violation(policy.Trigger.MANUAL_RENEWAL, "renewal was requested at please"),
    ),
    (
        "not-a-timestamp-honoured",
        lambda w: w.given(honouring(w.body, "please"), certificate=requesting("please")),
        None,
    ),
    (
        "issued-at-unrecorded",
        lambda w: w.given(
            with_metadata(honouring(w.body, REQUEST), annotations={ISSUED_AT_ANNOTATION: None}),
            certificate=requesting(REQUEST),
        ),
        None,
    ),
]


def test_a_request_dated_in_the_future_means_one_reissuance(world: World) -> None:
    """A client clock ahead of the operator's: the request is honoured by one
    issuance, and the Secret that issuance writes is up to date at once and
    for as long as the request stays the same."""
    certificate = requesting(FUTURE_REQUEST)
    before = world.given(world.body, certificate=certificate)
    assert policy.decide(before) == policy.Issue(
        Violation(policy.Trigger.MANUAL_RENEWAL, "renewal was requested at 2027-01-01T00:00:00Z")
    )
    reissued = secret_body(
        world.spec, world.ca, now=NOW + td(minutes=1), revision=2, renewal_request=FUTURE_REQUEST
    )
    assert reissued["metadata"]["annotations"][RENEWAL_REQUEST_ANNOTATION] == FUTURE_REQUEST
    for now in (NOW + td(minutes=1), NOW + td(minutes=2), NOW + td(days=30)):
        after = world.given(reissued, certificate=certificate, now=now)
        assert policy.manual_renewal(after) is None
        assert policy.decide(after) == policy.UpToDate(read_secret(reissued))
    # A new request is a new re-issuance.
    again = world.given(reissued, certificate=requesting("2027-01-01T00:00:01Z"), now=NOW)
    assert policy.decide(again) == policy.Issue(
        Violation(policy.Trigger.MANUAL_RENEWAL, "renewal was requested at 2027-01-01T00:00:01Z")
    )


@pytest.mark.parametrize(
    ("check", "case", "expected"),
    [
        *[
            pytest.param(policy.secret_missing, c, e, id=f"secret_missing-{i}")
            for i, c, e in SECRET_MISSING_CASES
        ],
        *[
            pytest.param(policy.secret_invalid, c, e, id=f"secret_invalid-{i}")
            for i, c, e in SECRET_INVALID_CASES
        ],
        *[
            pytest.param(policy.key_mismatch, c, e, id=f"key_mismatch-{i}")
            for i, c, e in KEY_MISMATCH_CASES
        ],
        *[
            pytest.param(policy.issuer_changed, c, e, id=f"issuer_changed-{i}")
            for i, c, e in ISSUER_CHANGED_CASES
        ],
        *[
            pytest.param(policy.spec_changed, c, e, id=f"spec_changed-{i}")
            for i, c, e in SPEC_CHANGED_CASES
        ],
        *[pytest.param(policy.expired, c, e, id=f"expired-{i}") for i, c, e in EXPIRED_CASES],
        *[
            pytest.param(policy.renewal_due, c, e, id=f"renewal_due-{i}")
            for i, c, e in RENEWAL_DUE_CASES
        ],
        *[
            pytest.param(policy.manual_renewal, c, e, id=f"manual_renewal-{i}")
            for i, c, e in MANUAL_RENEWAL_CASES
        ],
    ],
)
def test_issuance_trigger(
    world: World, check: policy.Check, case: Case, expected: Violation | None
) -> None:
    assert check(case(world)) == expected


def test_triggers_are_checked_in_the_order_of_the_specification() -> None:
    assert [check.__name__ for check in policy.ISSUANCE_CHECKS] == [
        "secret_missing",
        "secret_invalid",
        "key_mismatch",
        "revoked",
        "issuer_changed",
        "spec_changed",
        "expired",
        "renewal_due",
        "manual_renewal",
    ]
    assert [check.__name__ for check in policy.BLOCKING_CHECKS] == [
        "revoke_request_readable",
        "identity_allowed",
        "older_claimant",
        "unmanaged_secret",
        "wrong_secret_type",
        "ca_expired",
    ]


def test_the_identity_policy_comes_first_and_keeps_the_secret(world: World) -> None:
    other = IdentityRules("team-b", "cluster.local", "cluster.local")
    given = dataclasses.replace(world.given(world.body), identity=other)
    decision = policy.decide(given)
    assert isinstance(decision, policy.Blocked)
    assert decision.violation.reason == Reason.POLICY_DENIED
    assert decision.violation.message.startswith('spec.commonName "payments.shop.svc": ')
    assert decision.violation.message.endswith(
        "; Secret payments-tls is kept, and not renewed, until its certificate expires at "
        f"{NOT_AFTER.isoformat()}"
    )
    own = IdentityRules("shop", "cluster.local", "cluster.local")
    bound = certificate_spec(dnsNames=["payments.shop.svc"])
    allowed = dataclasses.replace(world.given(world.body, spec=bound), identity=own)
    assert policy.identity_allowed(allowed) is None
    assert policy.identity_allowed(world.given(world.body)) is None, "not judged"


# --- decide: the first violation wins ---


def outcome(decision: policy.Decision) -> tuple[str, str]:
    match decision:
        case policy.Blocked(violation):
            return ("Blocked", violation.reason)
        case policy.Issue(trigger):
            return ("Issue", trigger.reason)
        case policy.Repair(_, items):
            return ("Repair", ",".join(items))
        case policy.UpToDate():
            return ("UpToDate", "")
        case policy.Revoke(request, leaf):
            assert int(leaf.serial_number, 16) == request.serial_number
            return ("Revoke", request.reason.value)


def unmanaged(body: Mapping[str, Any]) -> dict[str, Any]:
    return with_metadata(body, labels={MANAGED_BY_LABEL: None})


def revoking(
    given: policy.Input, body: Mapping[str, Any], *, recorded: bool = False, offset: int = 0
) -> policy.Input:
    """`given` with a revocation asked of the serial `body` holds (plus `offset`)."""
    leaf = read_secret(body).leaf
    assert leaf is not None
    request = RevokeRequest(int(leaf.serial_number, 16) + offset, RevocationReason.KEY_COMPROMISE)
    return replace(given, revoke=request, revocation_recorded=recorded)


def revoking_held(
    given: Callable[[Mapping[str, Any]], policy.Input],
    body: Mapping[str, Any],
    *,
    recorded: bool,
) -> policy.Input:
    return revoking(given(body), body, recorded=recorded)


LATER = requesting(REQUEST)
DECIDE_CASES: list[tuple[str, Case, tuple[str, str]]] = [
    ("up-to-date", lambda w: w.given(w.body), ("UpToDate", "")),
    (
        "missing-secret-beats-every-other-trigger",
        lambda w: w.given(
            None, spec=certificate_spec(usage="both"), certificate=LATER, now=NOT_AFTER
        ),
        ("Issue", policy.Trigger.SECRET_MISSING),
    ),
    (
        "invalid-secret-beats-key-issuer-spec-and-manual",
        lambda w: w.given(
            with_data(w.issued_by(w.other_ca), {"ca.crt": None, "tls.key": another_key_pem()}),
            spec=certificate_spec(usage="both"),
            certificate=LATER,
        ),
        ("Issue", policy.Trigger.SECRET_INVALID),
    ),
    (
        "key-mismatch-beats-issuer-changed",
        lambda w: w.given(with_data(w.issued_by(w.other_ca), {"tls.key": another_key_pem()})),
        ("Issue", policy.Trigger.KEY_MISMATCH),
    ),
    (
        "issuer-changed-beats-spec-changed",
        lambda w: w.given(w.issued_by(w.other_ca), spec=certificate_spec(usage="both")),
        ("Issue", policy.Trigger.ISSUER_CHANGED),
    ),
    (
        "spec-changed-beats-renewal-due",
        lambda w: w.given(
            w.body, spec=certificate_spec(usage="both"), now=NOT_AFTER - RENEW_BEFORE
        ),
        ("Issue", policy.Trigger.SPEC_CHANGED),
    ),
    (
        "spec-changed-beats-expired",
        lambda w: w.given(w.body, spec=certificate_spec(usage="both"), now=NOT_AFTER),
        ("Issue", policy.Trigger.SPEC_CHANGED),
    ),
    (
        "expired-beats-renewal-due-and-manual",
        lambda w: w.given(w.body, now=NOT_AFTER, certificate=LATER),
        ("Issue", policy.Trigger.EXPIRED),
    ),
    (
        "renewal-due-beats-manual",
        lambda w: w.given(w.body, now=NOT_AFTER - RENEW_BEFORE, certificate=LATER),
        ("Issue", policy.Trigger.RENEWAL_DUE),
    ),
    (
        "manual-renewal",
        lambda w: w.given(w.body, certificate=LATER),
        ("Issue", policy.Trigger.MANUAL_RENEWAL),
    ),
    (
        "trigger-beats-drift",
        lambda w: w.given(
            w.body, spec=certificate_spec(usage="both", secretDeletionPolicy="Retain")
        ),
        ("Issue", policy.Trigger.SPEC_CHANGED),
    ),
    (
        "drift-only",
        lambda w: w.given(w.body, spec=certificate_spec(secretDeletionPolicy="Retain")),
        ("Repair", policy.Drift.OWNER_REFERENCE),
    ),
    (
        "older-claimant-beats-unmanaged-secret",
        lambda w: w.given(unmanaged(w.body), older_claimant="payments-old"),
        ("Blocked", Reason.SECRET_CONFLICT),
    ),
    (
        "older-claimant-beats-missing-secret",
        lambda w: w.given(None, older_claimant="payments-old"),
        ("Blocked", Reason.SECRET_CONFLICT),
    ),
    (
        "unmanaged-secret-beats-key-mismatch",
        lambda w: w.given(unmanaged(with_data(w.body, {"tls.key": another_key_pem()}))),
        ("Blocked", Reason.SECRET_CONFLICT),
    ),
    (
        "unmanaged-secret-beats-expired-ca",
        lambda w: w.given(unmanaged(w.body), ca=short_lived_ca(), now=NOW + td(days=2)),
        ("Blocked", Reason.SECRET_CONFLICT),
    ),
    (
        "expired-ca-beats-missing-secret",
        lambda w: w.given(None, ca=short_lived_ca(), now=NOW + td(days=2)),
        ("Blocked", Reason.CA_INVALID),
    ),
    (
        "revoking-the-held-certificate-beats-every-blocker",
        lambda w: revoking(w.given(w.body, older_claimant="a"), w.body),
        ("Revoke", "keyCompromise"),
    ),
    (
        "a-recorded-revocation-issues-before-the-issuer-changed",
        lambda w: revoking_held(w.given, w.issued_by(w.other_ca), recorded=True),
        ("Issue", policy.Trigger.REVOKED),
    ),
    (
        "a-recorded-revocation-is-not-issued-against-the-policy",
        lambda w: revoking(w.given(w.body, older_claimant="a"), w.body, recorded=True),
        ("Blocked", Reason.SECRET_CONFLICT),
    ),
    (
        "a-serial-the-secret-does-not-hold-changes-nothing",
        lambda w: revoking(w.given(w.body), w.body, offset=1),
        ("UpToDate", ""),
    ),
    (
        "a-malformed-revocation-blocks-before-the-identity",
        lambda w: replace(
            w.given(w.body, older_claimant="a"),
            revoke=RevocationRequestError("mtls.dev/revoke-serial 'x' is not hexadecimal"),
        ),
        ("Blocked", Reason.INVALID_SPEC),
    ),
]


@pytest.mark.parametrize(
    ("case", "expected"), [pytest.param(c, e, id=i) for i, c, e in DECIDE_CASES]
)
def test_decide_first_violation_wins(world: World, case: Case, expected: tuple[str, str]) -> None:
    assert outcome(policy.decide(case(world))) == expected


def test_decide_carries_the_violation_and_the_secret(world: World) -> None:
    assert policy.decide(world.given(None)) == policy.Issue(
        Violation(policy.Trigger.SECRET_MISSING, "Secret payments-tls does not exist")
    )
    assert policy.decide(world.given(world.body, older_claimant="a")) == policy.Blocked(
        Violation(
            Reason.SECRET_CONFLICT,
            "Secret payments-tls is also named by an older certificate, which owns it",
        )
    )
    facts = read_secret(world.body)
    assert policy.decide(world.given(world.body)) == policy.UpToDate(facts)
    retain = certificate_spec(secretDeletionPolicy="Retain")
    assert policy.decide(world.given(world.body, spec=retain)) == policy.Repair(
        facts, (policy.Drift.OWNER_REFERENCE,)
    )


# --- renewal_time and jitter ---


def test_renewal_time_is_not_after_minus_renew_before_minus_jitter() -> None:
    spec = certificate_spec(renewBefore="100h", duration="1000h")
    not_after = NOW + td(hours=1000)
    expected = not_after - td(hours=100) - renewal.jitter("uid-1", td(hours=100))
    assert renewal.renewal_due_at(spec, NOW, not_after, "uid-1") == expected


@pytest.mark.parametrize(
    ("fields", "granted", "renew_before"),
    [
        ({}, td(hours=2160), td(hours=720)),
        # The CA cut the lifetime to 30 days: a third of what was granted.
        ({}, td(days=30), td(days=10)),
        ({"renewBeforePercentage": 10}, td(hours=2160), td(hours=216)),
        ({"renewBefore": "24h"}, td(hours=2160), td(hours=24)),
        # renewBefore beyond what the CA granted: a third of that instead.
        ({"renewBefore": "720h"}, td(days=10), td(hours=80)),
    ],
    ids=["third", "third-of-granted", "percentage", "explicit", "explicit-beyond-granted"],
)
def test_renewal_time_uses_the_granted_lifetime(
    fields: dict[str, Any], granted: td, renew_before: td
) -> None:
    spec = certificate_spec(**fields)
    due = renewal.renewal_due_at(spec, NOW, NOW + granted, "uid-1")
    cap = min(renew_before / 10, td(hours=1))
    assert NOW + granted - renew_before - cap < due <= NOW + granted - renew_before


def test_certificate_cut_short_by_the_ca_is_not_due_right_after_issuance() -> None:
    ca = make_ca(common_name="Ending CA", lifetime=td(days=10))
    spec = certificate_spec(renewBefore="720h")
    body = secret_body(spec, ca)
    facts = read_secret(body)
    assert facts.leaf is not None
    # The CA lives 10 days: the leaf is cut to 240h, below renewBefore (720h).
    assert facts.leaf.not_after == NOW + td(days=10)
    given = policy.Input(CERTIFICATE, spec, facts, ca, NOW + td(minutes=1))
    assert policy.decide(given) == policy.UpToDate(facts)
    # Without the CA's limit, renewal falls back to a third of the granted
    # lifetime: 80h before notAfter.
    due = renewal.renewal_due_at(spec, NOW, facts.leaf.not_after, CERTIFICATE.uid)
    assert NOW + td(hours=160) - td(hours=1) < due <= NOW + td(hours=160)
    # With it, a renewal would be cut again, shorter each time: none is due
    # until the CA is rotated or extended.
    assert (
        renewal.secret_renewal_time(spec, CERTIFICATE.uid, facts, ca.not_after)
        == facts.leaf.not_after
    )
    for moment in (due, facts.leaf.not_after - td(seconds=1)):
        assert policy.renewal_due(policy.Input(CERTIFICATE, spec, facts, ca, moment)) is None
    extended = make_ca(common_name="Ending CA", lifetime=td(days=100))
    later = policy.Input(CERTIFICATE, spec, facts, extended, due)
    assert policy.renewal_due(later) == Violation(
        policy.Trigger.RENEWAL_DUE, f"renewal was due at {due.isoformat()}"
    )


def test_jitter_is_pinned_to_the_uid() -> None:
    # Derived from a digest of the uid, never from Python's per-process
    # hash(): the schedule must survive a restart.
    assert renewal.jitter("uid-payments", td(hours=720)) == td(seconds=1207, microseconds=987458)
    assert renewal.jitter("uid-payments", td(hours=720)) == renewal.jitter(
        "uid-payments", td(hours=720)
    )
    assert renewal.jitter("uid-payments", td(hours=720)) != renewal.jitter(
        "uid-orders", td(hours=720)
    )


@pytest.mark.parametrize(
    ("renew_before", "cap"),
    [
        (td(minutes=10), td(minutes=1)),
        (td(hours=5), td(minutes=30)),
        (td(hours=10), td(hours=1)),
        (td(hours=720), td(hours=1)),
    ],
    ids=["10m", "5h", "10h", "720h"],
)
def test_jitter_is_bounded_and_spread(renew_before: td, cap: td) -> None:
    jitters = [renewal.jitter(f"uid-{index}", renew_before) for index in range(1000)]
    assert all(td(0) <= j < cap for j in jitters)
    assert len(set(jitters)) == 1000
    # Certificates created together spread over the whole window.
    assert min(jitters) < cap * 0.01
    assert max(jitters) > cap * 0.99
    assert sum(j < cap / 2 for j in jitters) in range(450, 551)


def test_issued_at_prefers_the_record_and_falls_back_to_not_before(world: World) -> None:
    recorded = with_metadata(world.body, annotations={ISSUED_AT_ANNOTATION: "2026-11-28T13:00:00Z"})
    assert renewal.issued_at(read_secret(recorded)) == NOW + td(hours=1)
    unrecorded = with_metadata(world.body, annotations={ISSUED_AT_ANNOTATION: None})
    assert renewal.issued_at(read_secret(unrecorded)) == NOW
    unreadable = with_data(unrecorded, {"tls.crt": None})
    assert renewal.issued_at(read_secret(unreadable)) is None


# --- drift ---


TEAM = {
    "secretTemplate": {"labels": {"team": "payments"}, "annotations": {"example.com/owner": "ops"}}
}
RETAIN = {"secretDeletionPolicy": "Retain"}
DRIFT_CASES: list[tuple[str, Case, tuple[str, ...]]] = [
    ("none", lambda w: w.given(w.body), ()),
    ("no-secret", lambda w: w.given(None), ()),
    (
        "trust-bundle",
        lambda w: w.given(w.body, ca=with_next_root(w.ca)),
        (policy.Drift.TRUST_BUNDLE,),
    ),
    (
        "foreign-labels-and-annotations",
        lambda w: w.given(
            with_metadata(w.body, labels={"x": "y"}, annotations={"kubectl/last": "z"})
        ),
        (),
    ),
    (
        "template-added",
        lambda w: w.given(w.body, spec=certificate_spec(**TEAM)),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "template-in-place",
        lambda w: w.given(
            secret_body(certificate_spec(**TEAM), w.ca), spec=certificate_spec(**TEAM)
        ),
        (),
    ),
    (
        "template-label-edited",
        lambda w: w.given(
            with_metadata(secret_body(certificate_spec(**TEAM), w.ca), labels={"team": "orders"}),
            spec=certificate_spec(**TEAM),
        ),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "template-annotation-removed-by-someone",
        lambda w: w.given(
            with_metadata(
                secret_body(certificate_spec(**TEAM), w.ca), annotations={"example.com/owner": None}
            ),
            spec=certificate_spec(**TEAM),
        ),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "template-key-dropped-from-spec",
        lambda w: w.given(secret_body(certificate_spec(**TEAM), w.ca)),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        # The label is gone already, but the record still lists it.
        "template-record-stale",
        lambda w: w.given(with_metadata(w.body, annotations={TEMPLATE_LABELS_ANNOTATION: "team"})),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "certificate-annotation-missing",
        lambda w: w.given(with_metadata(w.body, annotations={CERTIFICATE_ANNOTATION: None})),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "owner-reference-missing-under-delete",
        lambda w: w.given(with_metadata(w.body, owner_references=[])),
        (policy.Drift.OWNER_REFERENCE,),
    ),
    (
        "owner-reference-present-under-retain",
        lambda w: w.given(w.body, spec=certificate_spec(**RETAIN)),
        (policy.Drift.OWNER_REFERENCE,),
    ),
    (
        "no-owner-reference-under-retain",
        lambda w: w.given(
            secret_body(certificate_spec(**RETAIN), w.ca), spec=certificate_spec(**RETAIN)
        ),
        (),
    ),
    (
        # A re-created certificate of the same name: the Secret records the
        # old uid and is owned by it.
        "previous-incarnation",
        lambda w: w.given(w.body, certificate=replace(CERTIFICATE, uid="uid-recreated")),
        (policy.Drift.SECRET_TEMPLATE, policy.Drift.OWNER_REFERENCE),
    ),
    (
        "certificate-annotation-names-another",
        lambda w: w.given(with_metadata(w.body, annotations={CERTIFICATE_ANNOTATION: "orders"})),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "certificate-uid-annotation-missing",
        lambda w: w.given(with_metadata(w.body, annotations={CERTIFICATE_UID_ANNOTATION: None})),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "certificate-uid-annotation-of-another",
        lambda w: w.given(
            with_metadata(w.body, annotations={CERTIFICATE_UID_ANNOTATION: "uid-other"})
        ),
        (policy.Drift.SECRET_TEMPLATE,),
    ),
    (
        "foreign-data-key",
        lambda w: w.given(with_data(w.body, {"app.properties": b"x"})),
        (),
    ),
    (
        "foreign-data-key-and-an-output-missing",
        lambda w: w.given(
            with_data(w.body, {"app.properties": b"x"}),
            spec=certificate_spec(additionalOutputFormats=["DER"]),
        ),
        (policy.Drift.OUTPUT_FORMATS,),
    ),
    (
        "output-format-added",
        lambda w: w.given(w.body, spec=certificate_spec(additionalOutputFormats=["DER"])),
        (policy.Drift.OUTPUT_FORMATS,),
    ),
    (
        "output-format-dropped",
        lambda w: w.given(
            secret_body(certificate_spec(additionalOutputFormats=["CombinedPEM"]), w.ca)
        ),
        (policy.Drift.OUTPUT_FORMATS,),
    ),
    (
        "keystore-added",
        lambda w: w.given(
            w.body,
            spec=certificate_spec(keystores={"pkcs12": {"passwordSecretRef": {"name": "p12"}}}),
        ),
        (policy.Drift.OUTPUT_FORMATS,),
    ),
    (
        "everything-in-a-fixed-order",
        lambda w: w.given(
            with_metadata(with_data(w.body, {"extra": b"x"}), owner_references=[]),
            spec=certificate_spec(**TEAM, additionalOutputFormats=["CombinedPEM"]),
            ca=with_next_root(w.ca),
        ),
        (
            policy.Drift.TRUST_BUNDLE,
            policy.Drift.SECRET_TEMPLATE,
            policy.Drift.OWNER_REFERENCE,
            policy.Drift.OUTPUT_FORMATS,
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "expected"), [pytest.param(c, e, id=i) for i, c, e in DRIFT_CASES]
)
def test_drift(world: World, case: Case, expected: tuple[str, ...]) -> None:
    assert policy.drift(case(world)) == expected


def test_secret_recording_another_certificate_is_drift(world: World) -> None:
    retain = certificate_spec(**RETAIN)
    previous_owner = CertificateRef("shop", "payments-old", "uid-old")
    body = secret_body(retain, world.ca, owner=previous_owner)
    assert read_secret(body).annotations[CERTIFICATE_ANNOTATION] == "payments-old"
    assert read_secret(body).annotations[CERTIFICATE_UID_ANNOTATION] == "uid-old"
    assert policy.drift(world.given(body, spec=retain)) == (policy.Drift.SECRET_TEMPLATE,)
    assert policy.decide(world.given(body, spec=retain)) == policy.Repair(
        read_secret(body), (policy.Drift.SECRET_TEMPLATE,)
    )


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        ({}, {"tls.crt", "tls.key", "ca.crt"}),
        (
            {"additionalOutputFormats": ["CombinedPEM"]},
            {"tls.crt", "tls.key", "ca.crt", "tls-combined.pem"},
        ),
        ({"additionalOutputFormats": ["DER"]}, {"tls.crt", "tls.key", "ca.crt", "key.der"}),
        (
            {"keystores": {"pkcs12": {"passwordSecretRef": {"name": "p12"}}}},
            {"tls.crt", "tls.key", "ca.crt", "keystore.p12", "truststore.p12"},
        ),
    ],
    ids=["plain", "combined", "der", "pkcs12"],
)
def test_expected_data_keys(fields: dict[str, Any], keys: set[str]) -> None:
    assert certificate_spec(**fields).data_keys == keys


def test_a_secret_of_another_type_blocks_issuance() -> None:
    ca = make_ca()
    spec = certificate_spec()
    body = secret_body(spec, ca)
    body["type"] = "Opaque"
    facts = read_secret(body)
    decision = policy.decide(policy.Input(CERTIFICATE, spec, facts, ca, NOW))
    assert decision == policy.Blocked(
        Violation(
            Reason.SECRET_CONFLICT,
            "Secret payments-tls has type Opaque, not kubernetes.io/tls; "
            "delete it and it is created again with the right type",
        )
    )


def test_a_renewal_request_is_a_new_utc_value_each_time() -> None:
    assert renewal.renewal_request(NOW) == NOW.isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )
    assert renewal.renewal_request(NOW + td(microseconds=1)) != renewal.renewal_request(NOW)
