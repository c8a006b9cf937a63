"""The tenancy store: which policies select which namespace, and who is told
when that changes (only the namespaces concerned, never for a status write)."""

from __future__ import annotations

from typing import Any

import pytest

from mtls_operator.policy.identity import IdentityMode
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.clock import NOW, FakeClock
from support.fake_api import FakeKube


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def policy(name: str, generation: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": {"namespaceSelector": {"matchLabels": {"team": "a"}}, **spec},
    }


@pytest.fixture
def tenancy() -> Tenancy:
    runtime = Runtime(FakeKube(), FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
    runtime.executor.shutdown()
    store = Tenancy(runtime, IdentitySettings())
    store.namespace_informer.replace(
        [namespace("a1", team="a"), namespace("a2", team="a"), namespace("b1", team="b")]
    )
    return store


def record(tenancy: Tenancy) -> tuple[list[str], list[str]]:
    namespaces: list[str] = []
    policies: list[str] = []
    tenancy.on_namespace_change(namespaces.append)
    tenancy.on_policy_change(policies.append)
    return namespaces, policies


def test_a_new_policy_is_told_to_the_namespaces_it_selects_only(tenancy: Tenancy) -> None:
    namespaces, policies = record(tenancy)
    tenancy.policy_informer.apply("ADDED", policy("p", allow={"dnsNames": ["api.example.com"]}))
    assert sorted(namespaces) == ["a1", "a2"]
    assert policies == ["p"]
    rules = tenancy.rules_for("a1")
    assert rules is not None
    assert [p.name for p in rules.policies] == ["p"]
    assert tenancy.rules_for("b1") is not None
    assert tenancy.rules_for("b1").policies == ()  # type: ignore[union-attr]
    assert tenancy.selected_namespaces("p") == ["a1", "a2"]


def test_a_status_write_changes_nothing(tenancy: Tenancy) -> None:
    tenancy.policy_informer.apply("ADDED", policy("p"))
    namespaces, policies = record(tenancy)
    with_status = {**policy("p"), "status": {"selectedNamespaceCount": 2}}
    tenancy.policy_informer.apply("MODIFIED", with_status)
    assert (namespaces, policies) == ([], [])


def test_a_changed_selector_tells_the_old_and_the_new_namespaces(tenancy: Tenancy) -> None:
    tenancy.policy_informer.apply("ADDED", policy("p"))
    namespaces, _ = record(tenancy)
    moved = policy("p", generation=2, namespaceSelector={"matchLabels": {"team": "b"}})
    tenancy.policy_informer.apply("MODIFIED", moved)
    assert sorted(namespaces) == ["a1", "a2", "b1"]
    tenancy.policy_informer.apply("DELETED", moved)
    assert sorted(namespaces) == ["a1", "a2", "b1", "b1"]


def test_a_relabelled_namespace_is_told_and_so_are_its_policies(tenancy: Tenancy) -> None:
    tenancy.policy_informer.apply("ADDED", policy("p"))
    namespaces, policies = record(tenancy)
    tenancy.namespace_informer.apply("MODIFIED", namespace("b1", team="a"))
    assert (namespaces, policies) == (["b1"], ["p"])
    tenancy.namespace_informer.apply("MODIFIED", namespace("b1", team="a", other="x"))
    assert (namespaces, policies) == (["b1"], ["p"]), "a label no policy reads"


def test_an_invalid_policy_grants_nothing(tenancy: Tenancy) -> None:
    tenancy.policy_informer.apply("ADDED", policy("bad", allow={"ipAddresses": ["10.0.0.1/8"]}))
    rules = tenancy.rules_for("a1")
    assert rules is not None
    assert rules.policies == ()
    assert tenancy.selected_namespaces("bad") == []


def test_open_mode_judges_nothing(tenancy: Tenancy) -> None:
    tenancy.settings = IdentitySettings(IdentityMode.OPEN)
    assert tenancy.rules_for("a1") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("namespace", "cluster.local", "bad domain"),
            "--trust-domain 'bad domain': must be a DNS name",
        ),
        (("namespace", "-x", None), "--cluster-domain '-x': must be a DNS name"),
    ],
)
def test_identity_settings_name_the_flag(args: tuple[str, str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IdentitySettings.parse(*args)
    assert IdentitySettings.parse("open", "Corp.Example").trust_domain == "corp.example"


def test_a_status_write_answered_with_a_newer_spec_is_no_proof_the_spec_was_seen(
    tenancy: Tenancy,
) -> None:
    # The controller writes the status of generation 1 (selecting every
    # namespace) while an administrator narrows the policy to team=a: the
    # answer to the write already carries generation 2, and the watch event
    # of generation 2 follows it.
    grants: dict[str, Any] = {"allow": {"dnsNames": ["api.example.com"]}}
    tenancy.policy_informer.apply("ADDED", policy("p", namespaceSelector={}, **grants))
    assert tenancy.selected_namespaces("p") == ["a1", "a2", "b1"]
    assert [p.name for p in tenancy.rules_for("b1").policies] == ["p"]  # type: ignore[union-attr]
    namespaces, policies = record(tenancy)
    narrowed = policy("p", generation=2, **grants)
    tenancy.record_status({**narrowed, "status": {"observedGeneration": 1}})
    tenancy.policy_informer.apply("MODIFIED", {**narrowed, "status": {"observedGeneration": 1}})
    rules = tenancy.rules_for("b1")
    assert rules is not None
    assert rules.policies == (), "b1 no longer selected, yet granted"
    assert [p.name for p in tenancy.rules_for("a1").policies] == ["p"]  # type: ignore[union-attr]
    assert "b1" in namespaces
    assert policies == ["p"]
    assert tenancy.selected_namespaces("p") == ["a1", "a2"]


def test_a_status_write_keeps_the_spec_the_store_has_seen(tenancy: Tenancy) -> None:
    tenancy.policy_informer.apply("ADDED", policy("p"))
    tenancy.record_status(
        {
            **policy("p", generation=2, namespaceSelector={}),
            "status": {"observedGeneration": 1, "selectedNamespaceCount": 2},
        }
    )
    record_ = tenancy.policy("p")
    assert record_ is not None
    assert record_.generation == 1
    assert record_.status == {"observedGeneration": 1, "selectedNamespaceCount": 2}
    assert tenancy.selected_namespaces("p") == ["a1", "a2"]
    tenancy.record_status({**policy("p", generation=1), "metadata": {"name": "p", "uid": "other"}})
    assert tenancy.policy("p") is record_, "the answer for another incarnation is not recorded"


NOT_TEAM_B = {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["b"]}]}


def test_a_namespace_whose_labels_are_unknown_is_selected_by_no_policy(tenancy: Tenancy) -> None:
    tenancy.policy_informer.apply("ADDED", policy("p", namespaceSelector=NOT_TEAM_B))
    assert [p.name for p in tenancy.rules_for("a1").policies] == ["p"]  # type: ignore[union-attr]
    assert tenancy.rules_for("new").policies == ()  # type: ignore[union-attr]
    assert "new" not in tenancy.selected_namespaces("p")


def test_a_namespace_is_known_once_its_watch_delivers_it_and_until_it_goes(
    tenancy: Tenancy,
) -> None:
    assert tenancy.knows("a1")
    assert not tenancy.knows("new")
    tenancy.namespace_informer.apply("ADDED", namespace("new", team="c"))
    assert tenancy.knows("new")
    tenancy.namespace_informer.apply("DELETED", namespace("new", team="c"))
    assert not tenancy.knows("new")
    tenancy.namespace_informer.replace([namespace("a1", team="a")])
    assert (tenancy.knows("a1"), tenancy.knows("a2")) == (True, False)


def test_open_mode_needs_no_namespace() -> None:
    runtime = Runtime(FakeKube(), FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
    runtime.executor.shutdown()
    store = Tenancy(runtime, IdentitySettings(IdentityMode.OPEN))
    assert store.knows("new")
    assert store.rules_for("new") is None
