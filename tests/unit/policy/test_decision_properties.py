"""Property tests of the decision chain: whatever a Secret holds (any labels,
annotations, data and owners a user or another tool may have left), whatever
the time and whoever else claims the Secret, `decide` returns a decision and
raises nothing; and what it decides is consistent with what it was given."""

from __future__ import annotations

import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtls_operator.api.managed_secret import (
    CA_FINGERPRINT_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    MANAGED_BY_LABEL,
    NOT_AFTER_ANNOTATION,
    RENEWAL_REQUEST_ANNOTATION,
    REVISION_ANNOTATION,
    SERIAL_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    TEMPLATE_ANNOTATIONS_ANNOTATION,
    TEMPLATE_LABELS_ANNOTATION,
    SecretFacts,
    read_secret,
)
from mtls_operator.api.outputs import CA_CRT, TLS_CRT, TLS_KEY
from mtls_operator.api.status import RECONCILING_REASONS, STALLED_REASONS
from mtls_operator.policy import certificate as policy
from mtls_operator.policy.identity import IdentityRules

from support.authorities import make_ca
from support.clock import NOW
from support.objects import CERTIFICATE, certificate_spec, secret_body, with_data, with_metadata

CA = make_ca()
OTHER_CA = make_ca(common_name="Other CA")
SPECS = [
    certificate_spec(),
    certificate_spec(usage="client", dnsNames=None, commonName="payments"),
    certificate_spec(
        privateKey={"algorithm": "Ed25519", "rotationPolicy": "Never"},
        secretTemplate={"labels": {"team": "pay"}, "annotations": {"example.com/a": "b"}},
        secretDeletionPolicy="Retain",
        additionalOutputFormats=[{"type": "DER"}],
    ),
    certificate_spec(duration="24h", renewBeforePercentage=50),
]
BODIES = [secret_body(spec, CA) for spec in SPECS]
ANNOTATIONS = [
    CA_FINGERPRINT_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    ISSUED_AT_ANNOTATION,
    NOT_AFTER_ANNOTATION,
    RENEWAL_REQUEST_ANNOTATION,
    REVISION_ANNOTATION,
    SERIAL_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    TEMPLATE_ANNOTATIONS_ANNOTATION,
    TEMPLATE_LABELS_ANNOTATION,
    "example.com/a",
]
TEXT = st.text(max_size=40)
# Each known annotation kept, removed, or replaced by any text.
ANNOTATION_CHANGES = st.dictionaries(
    st.sampled_from(ANNOTATIONS), st.one_of(st.none(), TEXT, st.just("2026-11-28T12:00:00Z"))
)
LABEL_CHANGES = st.dictionaries(
    st.sampled_from([MANAGED_BY_LABEL, "team"]), st.one_of(st.none(), TEXT)
)
DATA_CHANGES = st.dictionaries(
    st.sampled_from([TLS_CRT, TLS_KEY, CA_CRT, "key.der", "extra"]),
    st.one_of(
        st.none(), st.binary(max_size=64), st.sampled_from([b"-----BEGIN CERTIFICATE-----\n"])
    ),
)
OWNERS = st.lists(
    st.fixed_dictionaries({"uid": st.one_of(st.just(CERTIFICATE.uid), TEXT)}), max_size=2
)
TIMES = st.datetimes(
    min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)
).map(lambda t: t.replace(tzinfo=datetime.UTC))


@st.composite
def situations(draw: st.DrawFn) -> policy.Input:
    """A certificate, the Secret it finds (as anyone may have left it) and the moment."""
    body = with_metadata(
        with_data(draw(st.sampled_from(BODIES)), draw(DATA_CHANGES)),
        labels=draw(LABEL_CHANGES),
        annotations=draw(ANNOTATION_CHANGES),
        owner_references=draw(st.one_of(st.none(), OWNERS)),
    )
    body["type"] = draw(st.sampled_from(["kubernetes.io/tls", "Opaque", ""]))
    judged = draw(st.booleans())
    return policy.Input(
        certificate=CERTIFICATE,
        spec=draw(st.sampled_from(SPECS)),
        secret=None if draw(st.booleans()) else read_secret(body),
        ca=draw(st.sampled_from([CA, OTHER_CA])),
        now=draw(st.one_of(st.just(NOW), TIMES)),
        older_claimant=draw(st.one_of(st.none(), TEXT)),
        identity=IdentityRules("shop", "cluster.local", "cluster.local") if judged else None,
        keystore_password=draw(st.one_of(st.none(), TEXT)),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_any_secret_at_any_time_gets_a_decision(given_input: policy.Input) -> None:
    decision = policy.decide(given_input)

    match decision:
        case policy.Blocked(violation):
            assert violation.reason in STALLED_REASONS | RECONCILING_REASONS
            assert violation.message
        case policy.Issue(trigger):
            assert isinstance(trigger.reason, policy.Trigger)
        case policy.Repair(kept, items):
            assert items
            assert set(items) <= set(policy.Drift)
            assert_kept_only_when_sound(kept, given_input)
        case policy.UpToDate(kept):
            assert_kept_only_when_sound(kept, given_input)


def assert_kept_only_when_sound(kept: SecretFacts, given_input: policy.Input) -> None:
    """Only a managed Secret with a readable, matching key pair is kept."""
    assert kept is given_input.secret
    assert kept.managed
    assert kept.problem is None
    assert kept.key_matches
