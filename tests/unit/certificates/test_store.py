from __future__ import annotations

import json
from typing import Any

import pytest

from mtls_operator.api.managed_secret import SecretFacts, read_secret
from mtls_operator.api.resources import CertificateRef
from mtls_operator.api.spec import InvalidSpec
from mtls_operator.certificates.store import (
    CertificateRecord,
    Store,
    after_write,
    certificate_record,
)
from mtls_operator.runtime.cache import DELETED, MODIFIED, Informer, InformerGroup
from mtls_operator.runtime.kube import Object, ObjectKey, object_key

from support.objects import MIN_DURATION, spec_dict

NS = "shop"


def certificate(
    name: str,
    *,
    uid: str | None = None,
    rv: str = "1",
    generation: int = 1,
    created: str = "2026-11-28T12:00:00Z",
    namespace: str = NS,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
            "generation": generation,
            "creationTimestamp": created,
            "annotations": annotations or {},
        },
        "spec": spec_dict(**{"secretName": f"{name}-tls", **spec}),
        "status": {},
    }


def secret(
    name: str,
    *,
    uid: str | None = None,
    rv: str = "1",
    owner: str | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    annotations = {"mtls.dev/certificate": owner} if owner else {}
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": uid or f"uid-{name}",
            "resourceVersion": rv,
            "labels": {"app.kubernetes.io/managed-by": "mtls-operator"},
            "annotations": annotations,
        },
        "type": "kubernetes.io/tls",
    }


class Recorder:
    def __init__(self) -> None:
        self.keys: list[ObjectKey] = []

    def __call__(self, key: ObjectKey) -> None:
        self.keys.append(key)

    def take(self) -> list[ObjectKey]:
        keys, self.keys = self.keys, []
        return keys


@pytest.fixture
def changes() -> Recorder:
    return Recorder()


def informers(namespaces: tuple[str | None, ...], transform: Any) -> InformerGroup[Any]:
    return InformerGroup({namespace: Informer(transform) for namespace in namespaces})


def following(wake: Recorder, namespaces: tuple[str | None, ...] = (None,)) -> Store:
    store = Store(
        informers(namespaces, certificate_record), informers(namespaces, read_secret), wake
    )
    store.follow()
    return store


@pytest.fixture
def store(changes: Recorder) -> Store:
    return following(changes)


def delivered(group: InformerGroup[Any], event_type: str, body: Object) -> Any:
    """What the informer holds after `body`'s watch event, if it changed it."""
    key = object_key(body)
    informer = group.of(key[0])
    assert informer is not None
    before = informer.get(key)
    informer.apply(event_type, body)
    after = informer.get(key)
    return after if after is not before else None


def upsert_certificate(store: Store, body: Object) -> CertificateRecord | None:
    found: CertificateRecord | None = delivered(store.certificates, MODIFIED, body)
    return found


def remove_certificate(store: Store, body: Object) -> None:
    delivered(store.certificates, DELETED, body)


def upsert_secret(store: Store, body: Object) -> SecretFacts | None:
    found: SecretFacts | None = delivered(store.secrets, MODIFIED, body)
    return found


def remove_secret(store: Store, body: Object) -> None:
    delivered(store.secrets, DELETED, body)


def record_of(store: Store, key: ObjectKey) -> CertificateRecord:
    record = store.certificates.get(key)
    assert record is not None, key
    return record


def facts_of(store: Store, key: ObjectKey) -> SecretFacts:
    facts = store.secrets.get(key)
    assert facts is not None, key
    return facts


# --- Certificates ---


def test_certificate_record_from_body() -> None:
    record = certificate_record(
        certificate(
            "payments",
            rv="7",
            generation=3,
            annotations={"mtls.dev/renew-requested-at": "2026-11-28T12:00:00Z"},
        )
    )
    assert record.key == (NS, "payments")
    assert (record.uid, record.generation) == ("uid-payments", 3)
    assert record.created == "2026-11-28T12:00:00Z"
    assert record.secret_name == "payments-tls"
    # The raw annotation value: it is compared, never parsed as a time.
    assert record.ref == CertificateRef(NS, "payments", "uid-payments", "2026-11-28T12:00:00Z")
    assert record.ref.renewal_request == "2026-11-28T12:00:00Z"


@pytest.mark.parametrize(
    ("annotations", "renewal_request"),
    [
        ({}, None),
        ({"mtls.dev/renew-requested-at": ""}, None),
        ({"mtls.dev/renew-requested-at": "now please"}, "now please"),
        ({"mtls.dev/renew-requested-at": "2026-11-28T12:00:00+01:00"}, "2026-11-28T12:00:00+01:00"),
        ({"example.com/renew-requested-at": "2026-11-28T12:00:00Z"}, None),
    ],
    ids=["none", "empty", "not-a-timestamp", "other-zone-kept-verbatim", "other-annotation"],
)
def test_renewal_request_is_the_raw_annotation(
    annotations: dict[str, str], renewal_request: str | None
) -> None:
    record = certificate_record(certificate("payments", annotations=annotations))
    assert record.ref == CertificateRef(NS, "payments", "uid-payments", renewal_request)


@pytest.mark.parametrize("secret_name", [None, "", 5])
def test_certificate_without_a_usable_secret_name(secret_name: object) -> None:
    body = certificate("payments")
    body["spec"]["secretName"] = secret_name
    assert certificate_record(body).secret_name is None


def test_upsert_notifies_and_stores(store: Store, changes: Recorder) -> None:
    record = upsert_certificate(store, certificate("payments"))
    assert record is not None
    assert list(store.certificates) == [(NS, "payments")]
    assert record_of(store, (NS, "payments")) is record
    assert changes.take() == [(NS, "payments")]


@pytest.mark.parametrize(
    ("first", "second", "applied"),
    [
        ("5", "6", True),
        ("5", "5", False),
        ("5", "4", False),
        ("9", "10", True),  # compared as numbers, not strings
        ("abc", "abd", True),  # opaque versions: a different one wins
    ],
)
def test_stale_resource_versions_are_ignored(
    store: Store, changes: Recorder, first: str, second: str, applied: bool
) -> None:
    upsert_certificate(store, certificate("payments", rv=first))
    changes.take()
    result = upsert_certificate(store, certificate("payments", rv=second, commonName="changed"))
    assert (result is not None) is applied
    held = record_of(store, (NS, "payments")).parsed_spec(MIN_DURATION).request.subject
    assert (held.common_name == "changed") is applied
    assert changes.take() == ([(NS, "payments")] if applied else [])


def test_a_late_event_of_a_deleted_incarnation_does_not_replace_its_successor(
    store: Store,
) -> None:
    # etcd's revisions are global: a re-created object's are newer than
    # every one of the object it replaced.
    upsert_certificate(store, certificate("payments", uid="uid-2", rv="50"))
    assert upsert_certificate(store, certificate("payments", uid="uid-1", rv="49")) is None
    assert record_of(store, (NS, "payments")).uid == "uid-2"


def test_the_spec_parsed_is_kept_through_our_own_status_writes() -> None:
    first = certificate_record(certificate("payments", rv="1", generation=1))
    parsed = first.parsed_spec(MIN_DURATION)
    # A status write bumps the resourceVersion, not the generation.
    status_written = after_write(first, certificate("payments", rv="2", generation=1))
    assert status_written.parsed_spec(MIN_DURATION) is parsed
    changed_meanwhile = after_write(
        first, certificate("payments", rv="3", generation=2, dnsNames=["payments"])
    )
    assert changed_meanwhile.parsed_spec(MIN_DURATION) is not parsed
    assert changed_meanwhile.parsed_spec(MIN_DURATION).request.alt_names.dns_names == ("payments",)


def test_a_record_after_our_write_shares_the_strings_of_the_one_it_replaces() -> None:
    # Each decoded body has its own copy of every string.
    first, written = (
        json.loads(json.dumps(certificate("payments", rv=rv, generation=1))) for rv in "12"
    )
    assert first["metadata"]["name"] is not written["metadata"]["name"]
    previous = certificate_record(first)
    record = after_write(previous, written)
    assert record.name is previous.name
    assert record.created is previous.created


def test_our_own_status_write_wakes_no_one_unless_it_shows_a_change_of_someone_else(
    store: Store, changes: Recorder
) -> None:
    record = upsert_certificate(store, certificate("payments", rv="1"))
    assert record is not None
    changes.take()
    store.certificates.wrote(certificate("payments", rv="2"))
    assert changes.take() == []
    # A renewal request arrived between our read and our write: its own
    # event, older than our write, will be passed over.
    requested = certificate(
        "payments", rv="4", annotations={"mtls.dev/renew-requested-at": "2026-11-28T12:00:00Z"}
    )
    store.certificates.wrote(requested)
    assert changes.take() == [(NS, "payments")]
    assert upsert_certificate(store, certificate("payments", rv="3")) is None


def test_invalid_spec_is_cached_too(store: Store) -> None:
    record = upsert_certificate(store, certificate("payments", usage="serve"))
    assert record is not None
    with pytest.raises(InvalidSpec) as first:
        record.parsed_spec(MIN_DURATION)
    with pytest.raises(InvalidSpec) as second:
        record.parsed_spec(MIN_DURATION)
    assert first.value is second.value
    assert str(first.value) == 'spec.usage "serve": must be server, client or both'


def test_remove_certificate(store: Store, changes: Recorder) -> None:
    upsert_certificate(store, certificate("payments"))
    changes.take()
    remove_certificate(store, certificate("payments", uid="uid-earlier", rv="0"))
    assert (NS, "payments") in store.certificates
    remove_certificate(store, certificate("payments"))
    assert list(store.certificates) == []
    assert changes.take() == [(NS, "payments")], "the controller forgets it"
    remove_certificate(store, certificate("payments"))  # already gone: nothing happens


# --- Claimants ---


def claim(
    store: Store, name: str, created: str, target: str = "shared-tls", namespace: str = NS
) -> None:
    upsert_certificate(
        store, certificate(name, created=created, secretName=target, namespace=namespace)
    )


def test_older_claimant(store: Store) -> None:
    claim(store, "b-newer", "2026-11-28T12:00:05Z")
    claim(store, "a-older", "2026-11-28T12:00:00Z")
    claim(store, "c-newest", "2026-11-28T12:00:09Z")
    claim(store, "elsewhere", "2026-01-01T00:00:00Z", namespace="other")
    claim(store, "other-secret", "2026-01-01T00:00:00Z", target="other-tls")
    older = {
        name: store.older_claimant(record_of(store, (NS, name)))
        for name in ("a-older", "b-newer", "c-newest")
    }
    assert older == {"a-older": None, "b-newer": "a-older", "c-newest": "a-older"}
    assert store.older_claimant(record_of(store, (NS, "other-secret"))) is None
    assert store.older_claimant(record_of(store, ("other", "elsewhere"))) is None


def test_same_creation_time_is_broken_by_name(store: Store) -> None:
    claim(store, "beta", "2026-11-28T12:00:00Z")
    claim(store, "alpha", "2026-11-28T12:00:00Z")
    assert store.older_claimant(record_of(store, (NS, "beta"))) == "alpha"
    assert store.older_claimant(record_of(store, (NS, "alpha"))) is None


def test_the_certificate_a_secret_was_written_for_keeps_it_whatever_the_names(
    store: Store,
) -> None:
    claim(store, "zeta", "2026-11-28T12:00:00Z")
    written = secret("shared-tls")
    written["metadata"]["annotations"]["mtls.dev/certificate-uid"] = "uid-zeta"
    upsert_secret(store, written)
    claim(store, "alpha", "2026-11-28T12:00:00Z")  # the same second, first by name
    assert store.older_claimant(record_of(store, (NS, "alpha"))) == "zeta"
    assert store.older_claimant(record_of(store, (NS, "zeta"))) is None


def test_deleting_the_owner_notifies_the_next_claimant(store: Store, changes: Recorder) -> None:
    claim(store, "first", "2026-11-28T12:00:00Z")
    claim(store, "second", "2026-11-28T12:00:01Z")
    changes.take()
    remove_certificate(store, certificate("first", secretName="shared-tls"))
    assert changes.take() == [(NS, "first"), (NS, "second")]
    assert store.older_claimant(record_of(store, (NS, "second"))) is None


def test_moving_the_owner_to_another_secret_notifies_the_next_claimant(
    store: Store, changes: Recorder
) -> None:
    claim(store, "first", "2026-11-28T12:00:00Z")
    claim(store, "second", "2026-11-28T12:00:01Z")
    changes.take()
    upsert_certificate(
        store,
        certificate(
            "first", rv="2", generation=2, created="2026-11-28T12:00:00Z", secretName="first-tls"
        ),
    )
    assert store.older_claimant(record_of(store, (NS, "second"))) is None
    assert changes.take() == [(NS, "first"), (NS, "second")]


def test_moving_the_only_claimant_notifies_itself_only(store: Store, changes: Recorder) -> None:
    claim(store, "first", "2026-11-28T12:00:00Z")
    claim(store, "elsewhere", "2026-11-28T12:00:01Z", target="other-tls")
    changes.take()
    upsert_certificate(
        store,
        certificate(
            "first", rv="2", generation=2, created="2026-11-28T12:00:00Z", secretName="first-tls"
        ),
    )
    assert changes.take() == [(NS, "first")]


def test_an_update_keeping_the_secret_name_notifies_no_other_claimant(
    store: Store, changes: Recorder
) -> None:
    claim(store, "first", "2026-11-28T12:00:00Z")
    claim(store, "second", "2026-11-28T12:00:01Z")
    changes.take()
    upsert_certificate(
        store,
        certificate(
            "first",
            rv="2",
            generation=2,
            created="2026-11-28T12:00:00Z",
            secretName="shared-tls",
            commonName="changed",
        ),
    )
    assert changes.take() == [(NS, "first")]
    assert store.older_claimant(record_of(store, (NS, "second"))) == "first"


def test_moving_onto_a_claimed_secret_blocks_the_newer_claimant(
    store: Store, changes: Recorder
) -> None:
    claim(store, "older", "2026-11-28T12:00:00Z", target="older-tls")
    claim(store, "newer", "2026-11-28T12:00:01Z", target="shared-tls")
    changes.take()
    upsert_certificate(
        store,
        certificate(
            "older", rv="2", generation=2, created="2026-11-28T12:00:00Z", secretName="shared-tls"
        ),
    )
    # Nobody else named older-tls; the newer claimant of shared-tls owned it
    # until now, and is told so that it stops keeping it.
    assert changes.take() == [(NS, "older"), (NS, "newer")]
    assert store.older_claimant(record_of(store, (NS, "newer"))) == "older"


def many_claimants(store: Store, count: int) -> list[str]:
    """`count` certificates naming shared-tls, oldest first."""
    names = [f"c{i:03d}" for i in range(count)]
    for i, name in enumerate(names):
        claim(store, name, f"2026-11-28T12:{i // 60:02d}:{i % 60:02d}Z")
    return names


def test_deleting_the_owner_of_a_much_claimed_secret_wakes_the_new_owner_only(
    store: Store, changes: Recorder
) -> None:
    names = many_claimants(store, 50)
    changes.take()
    remove_certificate(store, certificate(names[0], secretName="shared-tls"))
    assert changes.take() == [(NS, names[0]), (NS, names[1])]
    assert store.older_claimant(record_of(store, (NS, names[1]))) is None
    assert store.older_claimant(record_of(store, (NS, names[2]))) == names[1]


def test_deleting_or_moving_a_claimant_that_owns_nothing_wakes_nobody_else(
    store: Store, changes: Recorder
) -> None:
    names = many_claimants(store, 50)
    changes.take()
    remove_certificate(store, certificate(names[10], secretName="shared-tls"))
    assert changes.take() == [(NS, names[10])]
    moved = certificate(names[11], rv="2", generation=2, secretName="own-tls")
    moved["metadata"]["creationTimestamp"] = "2026-11-28T12:00:11Z"
    upsert_certificate(store, moved)
    assert changes.take() == [(NS, names[11])]
    assert store.older_claimant(record_of(store, (NS, names[11]))) is None
    assert store.older_claimant(record_of(store, (NS, names[12]))) == names[0]


def test_a_change_of_a_much_claimed_secret_wakes_its_owner_only(
    store: Store, changes: Recorder
) -> None:
    names = many_claimants(store, 50)
    changes.take()
    upsert_secret(store, secret("shared-tls", owner=names[0]))
    assert changes.take() == [(NS, names[0])]


def test_a_secret_written_for_a_newer_claimant_moves_the_ownership_and_says_so(
    store: Store, changes: Recorder
) -> None:
    # The Secret carries the uid of the certificate it was written for (the
    # operator restarted, and an older certificate was created meanwhile in
    # the same second): that one keeps it, and both are told.
    names = many_claimants(store, 5)
    changes.take()
    written = secret("shared-tls", owner=names[3])
    written["metadata"]["annotations"]["mtls.dev/certificate-uid"] = f"uid-{names[3]}"
    upsert_secret(store, written)
    assert sorted(changes.take()) == [(NS, names[0]), (NS, names[3])]
    assert store.older_claimant(record_of(store, (NS, names[0]))) == names[3]
    assert store.older_claimant(record_of(store, (NS, names[3]))) is None
    remove_secret(store, written)
    assert sorted(changes.take()) == [(NS, names[0]), (NS, names[3])]
    assert store.older_claimant(record_of(store, (NS, names[3]))) == names[0]


def test_a_claimant_record_no_longer_in_the_store_is_judged_by_its_rank(store: Store) -> None:
    names = many_claimants(store, 3)
    gone = record_of(store, (NS, names[0]))
    remove_certificate(store, certificate(names[0], secretName="shared-tls"))
    assert store.older_claimant(gone) is None
    later = record_of(store, (NS, names[2]))
    remove_certificate(store, certificate(names[2], secretName="shared-tls"))
    assert store.older_claimant(later) == names[1]


# --- Secrets ---


def test_secret_change_notifies_the_certificate_it_names_and_its_owner(
    store: Store, changes: Recorder
) -> None:
    claim(store, "first", "2026-11-28T12:00:00Z")
    claim(store, "second", "2026-11-28T12:00:01Z")
    upsert_certificate(store, certificate("payments"))
    changes.take()
    facts = upsert_secret(store, secret("shared-tls", owner="second"))
    assert facts is not None
    assert facts_of(store, (NS, "shared-tls")) is facts
    # second is named by the Secret (it wrote it, perhaps before first
    # existed); first owns it: both look again, and the other claimants
    # (whose verdict does not depend on the Secret) do not.
    assert sorted(changes.take()) == [(NS, "first"), (NS, "second")]


def test_secret_names_its_owner_even_when_the_spec_moved_away(
    store: Store, changes: Recorder
) -> None:
    # The certificate now names another Secret, but the old one still says
    # it belongs to it: the certificate is looked at again.
    upsert_certificate(store, certificate("payments", secretName="new-tls"))
    changes.take()
    upsert_secret(store, secret("payments-tls", owner="payments"))
    assert changes.take() == [(NS, "payments")]


def test_secret_of_no_known_certificate_notifies_nobody(store: Store, changes: Recorder) -> None:
    upsert_secret(store, secret("orphan-tls", owner="deleted-certificate"))
    upsert_secret(store, secret("payments-tls", owner="payments", namespace="other"))
    assert changes.take() == []
    assert set(store.secrets) == {(NS, "orphan-tls"), ("other", "payments-tls")}


def test_stale_secret_events_are_ignored(store: Store, changes: Recorder) -> None:
    upsert_certificate(store, certificate("payments"))
    upsert_secret(store, secret("payments-tls", rv="10", owner="payments"))
    changes.take()
    assert upsert_secret(store, secret("payments-tls", rv="9", owner="payments")) is None
    assert upsert_secret(store, secret("payments-tls", rv="10", owner="payments")) is None
    assert changes.take() == []
    assert facts_of(store, (NS, "payments-tls")).resource_version == "10"


def test_secret_deletion_notifies_and_forgets(store: Store, changes: Recorder) -> None:
    upsert_certificate(store, certificate("payments"))
    upsert_secret(store, secret("payments-tls", rv="10", owner="payments"))
    changes.take()
    remove_secret(store, secret("payments-tls", rv="11"))
    assert (NS, "payments-tls") not in store.secrets
    assert changes.take() == [(NS, "payments")]
    remove_secret(store, secret("payments-tls", rv="12"))  # unknown: nothing happens
    assert changes.take() == []


def test_an_older_deletion_does_not_forget_a_newer_write(store: Store, changes: Recorder) -> None:
    upsert_certificate(store, certificate("payments"))
    upsert_secret(store, secret("payments-tls", rv="20", owner="payments"))
    changes.take()
    remove_secret(store, secret("payments-tls", rv="15"))
    assert (NS, "payments-tls") in store.secrets
    assert changes.take() == []


def test_deletion_of_a_previous_incarnation_keeps_the_current_secret(
    store: Store, changes: Recorder
) -> None:
    upsert_certificate(store, certificate("payments"))
    upsert_secret(store, secret("payments-tls", uid="uid-new", rv="20", owner="payments"))
    changes.take()
    remove_secret(store, secret("payments-tls", uid="uid-old", rv="15"))
    assert facts_of(store, (NS, "payments-tls")).uid == "uid-new"
    assert facts_of(store, (NS, "payments-tls")).resource_version == "20"
    assert changes.take() == []


def test_the_deletion_of_a_newer_incarnation_forgets_the_older_one(store: Store) -> None:
    # The watch missed a deletion and a re-creation; the successor's own
    # deletion is the first it hears of: neither exists any more.
    upsert_secret(store, secret("payments-tls", uid="uid-first", rv="20"))
    remove_secret(store, secret("payments-tls", uid="uid-second", rv="25"))
    assert list(store.secrets) == []


def test_deletion_of_the_current_incarnation_at_its_version(
    store: Store, changes: Recorder
) -> None:
    upsert_certificate(store, certificate("payments"))
    upsert_secret(store, secret("payments-tls", uid="uid-current", rv="20", owner="payments"))
    changes.take()
    remove_secret(store, secret("payments-tls", uid="uid-current", rv="20"))
    assert list(store.secrets) == []
    assert changes.take() == [(NS, "payments")]


def test_a_late_event_of_a_previous_incarnation_does_not_replace_the_current_secret(
    store: Store, changes: Recorder
) -> None:
    upsert_certificate(store, certificate("payments"))
    # The operator re-created the Secret and stored its own write...
    upsert_secret(store, secret("payments-tls", uid="uid-new", rv="20", owner="payments"))
    changes.take()
    # ...before the watch delivered the last update of the old one.
    assert upsert_secret(store, secret("payments-tls", uid="uid-old", rv="15")) is None
    assert facts_of(store, (NS, "payments-tls")).uid == "uid-new"
    assert changes.take() == []


def test_a_newer_incarnation_replaces_the_stored_secret(store: Store, changes: Recorder) -> None:
    upsert_certificate(store, certificate("payments"))
    upsert_secret(store, secret("payments-tls", uid="uid-old", rv="15", owner="payments"))
    changes.take()
    facts = upsert_secret(store, secret("payments-tls", uid="uid-new", rv="20", owner="payments"))
    assert facts is not None
    assert (facts.uid, facts.resource_version) == ("uid-new", "20")
    assert facts_of(store, (NS, "payments-tls")) is facts
    assert changes.take() == [(NS, "payments")]


def relist(informer: Informer[Any] | None, *pages: list[dict[str, Any]]) -> None:
    assert informer is not None
    informer.begin_relist()
    for page in pages:
        informer.add_page(page)
    informer.end_relist("")


def test_a_relist_forgets_vanished_secrets_of_its_namespace_only(changes: Recorder) -> None:
    store = following(changes, (NS, "other"))
    for name in ("a", "b", "gone"):
        upsert_certificate(store, certificate(name))
        upsert_secret(store, secret(f"{name}-tls", owner=name))
    upsert_secret(store, secret("x-tls", namespace="other"))
    changes.take()
    relist(
        store.secrets.of(NS),
        [secret("a-tls", owner="a")],
        [secret("b-tls", rv="2", owner="b")],
    )
    assert set(store.secrets) == {(NS, "a-tls"), (NS, "b-tls"), ("other", "x-tls")}
    # b changed, gone vanished; a is unchanged.
    assert sorted(changes.take()) == [(NS, "b"), (NS, "gone")]


def test_a_relist_of_all_namespaces(store: Store) -> None:
    upsert_secret(store, secret("a-tls"))
    upsert_secret(store, secret("x-tls", namespace="other"))
    relist(store.secrets.of(NS), [secret("a-tls")])
    assert set(store.secrets) == {(NS, "a-tls")}


def test_a_relist_wakes_the_certificates_it_no_longer_holds(
    store: Store, changes: Recorder
) -> None:
    for name in ("kept", "gone"):
        upsert_certificate(store, certificate(name))
    changes.take()
    relist(store.certificates.of(NS), [certificate("kept")], [certificate("new")])
    assert changes.take() == [(NS, "new"), (NS, "gone")]
    assert set(store.certificates) == {(NS, "kept"), (NS, "new")}


def test_certificates_heard_before_following_are_told_when_it_starts(changes: Recorder) -> None:
    store = Store(informers((None,), certificate_record), informers((None,), read_secret), changes)
    informer = store.certificates.of(NS)
    assert informer is not None
    informer.apply(MODIFIED, certificate("payments"))
    assert changes.take() == []
    store.follow()
    assert changes.take() == [(NS, "payments")]
