"""A policy entry that can grant nothing (one the rules of names signed as
judged refuse, or a host name in allow.commonNames) is reported in the
policy's status and grants nothing, and the rest of the policy stands: a
policy written before those rules keeps its other grants on upgrade."""

from __future__ import annotations

import asyncio
from typing import Any

from mtls_operator.api.mtls_policy import parse_policy
from mtls_operator.api.resources import policies_path
from mtls_operator.api.spec import parse_spec
from mtls_operator.mtlspolicies.controller import PolicyController
from mtls_operator.policy.identity import IdentityRules, identity_violation
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.clock import NOW, FakeClock
from support.fake_api import FakeKube
from support.objects import MIN_DURATION

LEGACY = {
    "namespaceSelector": {},
    "allow": {
        "dnsNames": ["api.example.com"],
        "ipAddresses": ["::ffff:0:0/96", "10.20.0.0/16"],
        "commonNames": ["Acme, Inc", "Legacy Server", "api.team-b.svc", "10.96.0.10"],
        "organizationalUnits": ["ops,CN=admin", "Platform"],
    },
}
IGNORED = (
    'spec.allow.ipAddresses[0] "::ffff:0:0/96": IPv4-mapped IPv6 addresses are never signed',
    "spec.allow.commonNames[0] \"Acme, Inc\": must not contain ','",
    'spec.allow.commonNames[2] "api.team-b.svc": a host name or IP address',
    'spec.allow.commonNames[3] "10.96.0.10": a host name or IP address',
    "spec.allow.organizationalUnits[0] \"ops,CN=admin\": must not contain ','",
)


def test_an_entry_that_grants_nothing_leaves_the_rest_of_the_policy() -> None:
    policy = parse_policy("legacy", LEGACY)
    assert len(policy.ignored) == len(IGNORED)
    for reported, expected in zip(policy.ignored, IGNORED, strict=True):
        assert reported.startswith(expected), reported
    grants = policy.grants
    assert grants.common_names == {"Legacy Server"}
    assert grants.organizational_units == {"Platform"}
    assert [str(n) for n in grants.ip_networks] == ["10.20.0.0/16"]
    spec = parse_spec(
        {
            "secretName": "s",
            "usage": "server",
            "commonName": "Legacy Server",
            "dnsNames": ["api.example.com"],
            "subject": {"organizationalUnits": ["Platform"]},
        },
        MIN_DURATION,
    )
    rules = IdentityRules("team-a", "cluster.local", "cluster.local", (policy,))
    assert identity_violation(spec.request, rules) is None


def test_the_policy_status_names_the_entries_that_grant_nothing() -> None:
    kube = FakeKube()
    runtime = Runtime(kube, FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
    runtime.executor.shutdown()
    tenancy = Tenancy(runtime, IdentitySettings())
    tenancy.namespace_informer.replace([{"metadata": {"name": "team-a"}}])
    body: dict[str, Any] = {
        "metadata": {"name": "legacy", "uid": "uid-legacy", "generation": 1},
        "spec": LEGACY,
    }
    tenancy.policy_informer.replace([kube.put(policies_path("legacy"), body)])
    asyncio.run(PolicyController(runtime, tenancy).reconcile("legacy"))
    ready = kube.objects[policies_path("legacy")]["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "EntriesIgnored")
    assert ready["message"].startswith("selects 1 namespace; these entries grant nothing: ")
    assert all(entry in ready["message"] for entry in IGNORED), ready["message"]
