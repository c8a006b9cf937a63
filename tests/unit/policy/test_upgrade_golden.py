"""Upgrades re-issue nothing: the issuance hash of every spec is pinned, and
every Secret as 0.1.0 wrote it is up to date for today's decision.

A failure here means the hash material, the Secret layout or a trigger
changed in a way that would re-issue certificates in every cluster on
upgrade: make it deliberate, with a migration, and regenerate nothing.
"""

from __future__ import annotations

import datetime
import json

import pytest

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.spec import parse_spec
from mtls_operator.policy import certificate as policy

from support.golden import FIXTURE, Golden, GoldenCase, load_golden

GOLDEN = load_golden()
MIN_DURATION = datetime.timedelta(minutes=1)
# Well inside every fixture's validity and before any renewal time.
LOOKED_AT = GOLDEN.issued_at + datetime.timedelta(minutes=10)


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [(c.name, c.spec, c.spec_hash) for c in GOLDEN.cases]
    + [(name, spec, expected) for name, spec, expected in GOLDEN.hash_only],
    ids=lambda value: value if isinstance(value, str) and not value.startswith("v1:") else "",
)
def test_issuance_hash_is_pinned(name: str, spec: dict[str, object], expected: str) -> None:
    assert parse_spec(spec, MIN_DURATION).issuance_hash() == expected, name


def decision_for(golden: Golden, case: GoldenCase) -> policy.Decision:
    certificate = CertificateRef(golden.namespace, case.name, case.uid)
    return policy.decide(
        policy.Input(
            certificate=certificate,
            spec=parse_spec(case.spec, MIN_DURATION),
            secret=read_secret(case.secret),
            ca=golden.ca,
            now=LOOKED_AT,
        )
    )


@pytest.mark.parametrize("case", GOLDEN.cases, ids=lambda c: c.name)
def test_secret_written_by_0_1_0_is_up_to_date(case: GoldenCase) -> None:
    decision = decision_for(GOLDEN, case)
    assert isinstance(decision, policy.UpToDate), decision


def test_fixture_holds_no_private_key() -> None:
    document = json.loads(FIXTURE.read_text())
    assert "PRIVATE KEY" not in FIXTURE.read_text()
    for case in document["cases"]:
        assert not set(case["secret"]["data"]) & set(case["rebuilt"]), case["name"]
