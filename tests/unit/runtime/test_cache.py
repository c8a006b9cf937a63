"""The shared cache: one informer per kind and scope, each object decoded once, indexes kept
through every change, and subscribers told of what a re-list no longer holds."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from mtls_operator.runtime.cache import (
    ADDED,
    DELETED,
    MODIFIED,
    Change,
    Informer,
    InformerGroup,
    SharedCache,
    newer,
)

from support.fake_api import FakeKube, RecordedWatches


def body(name: str, version: str, target: str = "s", namespace: str = "a") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "resourceVersion": version},
        "spec": {"secretName": target},
    }


class Decoded:
    """What a controller keeps of an object; counts how often objects were decoded."""

    count = 0

    def __init__(self, obj: dict[str, Any]) -> None:
        Decoded.count += 1
        self.secret = obj["spec"]["secretName"]
        self.version = obj["metadata"]["resourceVersion"]


def by_secret(item: Decoded) -> list[str]:
    return [item.secret]


@pytest.fixture
def informer() -> Informer[Decoded]:
    informer: Informer[Decoded] = Informer(Decoded)
    informer.add_index("secret", by_secret)
    return informer


def heard(informer: Informer[Decoded]) -> list[Change[Decoded]]:
    changes: list[Change[Decoded]] = []
    informer.subscribe(changes.append)
    return changes


def test_a_relist_tells_of_what_it_no_longer_holds(informer: Informer[Decoded]) -> None:
    informer.begin_relist()
    informer.add_page([body("one", "1"), body("two", "2")])
    informer.end_relist("2")
    changes = heard(informer)
    assert [(c.type, c.key) for c in changes] == [(ADDED, ("a", "one")), (ADDED, ("a", "two"))]

    informer.begin_relist()
    informer.add_page([body("two", "2")])
    informer.end_relist("3")
    assert [(c.type, c.key) for c in changes[2:]] == [(DELETED, ("a", "one"))]
    assert changes[2].old is not None
    assert changes[2].old.version == "1"
    assert informer.get(("a", "one")) is None
    assert informer.keys_by("secret", "s") == {("a", "two")}


def test_a_relist_keeps_what_was_written_after_its_snapshot(informer: Informer[Decoded]) -> None:
    """A list read out at version 10 while we created `new` (version 11) and the watch,
    which would have delivered it, was down: `new` exists, and is kept."""
    informer.apply(ADDED, body("old", "5"))
    changes = heard(informer)
    informer.begin_relist()
    informer.wrote(body("new", "11"))
    informer.add_page([])
    informer.end_relist("10")
    assert informer.get(("a", "new")) is not None
    assert [(c.type, c.key) for c in changes[1:]] == [
        (ADDED, ("a", "new")),
        (DELETED, ("a", "old")),
    ]


def test_an_object_is_decoded_once_per_version(informer: Informer[Decoded]) -> None:
    changes = heard(informer)
    before = Decoded.count
    informer.apply(ADDED, body("one", "1"))
    informer.begin_relist()  # a reconnect lists what the watch already delivered
    informer.add_page([body("one", "1")])
    informer.end_relist("1")
    informer.apply(MODIFIED, body("one", "1"))
    assert Decoded.count - before == 1
    assert [c.type for c in changes] == [ADDED]
    informer.apply(MODIFIED, body("one", "2"))
    assert Decoded.count - before == 2
    assert [(c.type, c.old and c.old.version, c.new and c.new.version) for c in changes[1:]] == [
        (MODIFIED, "1", "2")
    ]


def test_indexes_follow_every_change(informer: Informer[Decoded]) -> None:
    informer.apply(ADDED, body("one", "1", target="x"))
    informer.apply(ADDED, body("two", "1", target="x"))
    informer.apply(ADDED, body("three", "1", target="x", namespace="b"))
    assert informer.keys_by("secret", "x") == {("a", "one"), ("a", "two"), ("b", "three")}
    informer.apply(MODIFIED, body("one", "2", target="y"))
    informer.apply(DELETED, body("two", "1", target="x"))
    assert informer.keys_by("secret", "x") == {("b", "three")}
    assert informer.keys_by("secret", "y") == {("a", "one")}
    assert informer.keys_by("secret", "z") == set()


def test_an_object_is_held_under_one_key_however_often_it_changes(
    informer: Informer[Decoded],
) -> None:
    informer.apply(ADDED, body("one", "1", target="x"))
    (held,) = informer
    informer.apply(MODIFIED, body("one", "2", target="x"))
    informer.wrote(body("one", "3", target="x"))
    (indexed,) = informer.keys_by("secret", "x")
    assert indexed is held


def test_keys_share_one_copy_of_each_namespace(informer: Informer[Decoded]) -> None:
    # Each decoded body has its own copy of the namespace's name.
    first, second = (json.loads(json.dumps(body(name, "1", namespace="shop"))) for name in "ab")
    assert first["metadata"]["namespace"] is not second["metadata"]["namespace"]
    informer.apply(ADDED, first)
    informer.apply(ADDED, second)
    (namespace_1, _), (namespace_2, _) = sorted(informer)
    assert namespace_1 is namespace_2


def test_an_index_declared_late_covers_what_is_held() -> None:
    informer: Informer[Decoded] = Informer(Decoded)
    informer.apply(ADDED, body("one", "1", target="x"))
    informer.add_index("secret", by_secret)
    assert informer.keys_by("secret", "x") == {("a", "one")}


def test_a_late_subscriber_hears_what_is_held_first(informer: Informer[Decoded]) -> None:
    informer.apply(ADDED, body("one", "1"))
    early, late = heard(informer), None
    informer.apply(ADDED, body("two", "1"))
    late = heard(informer)
    assert [c.key for c in early] == [("a", "one"), ("a", "two")]
    assert sorted(c.key for c in late) == [("a", "one"), ("a", "two")]


def test_one_informer_and_one_watch_per_kind_and_scope() -> None:
    watches = RecordedWatches()
    cache = SharedCache(FakeKube(), watches)
    first = cache.informer("certs", "/apis/x/v1/things", Decoded, {"labelSelector": "a=b"})
    again = cache.informer("certs", "/apis/x/v1/things", Decoded, {"labelSelector": "a=b"})
    other = cache.informer("certs-c", "/apis/x/v1/things", Decoded, {"labelSelector": "c=d"})
    assert first is again
    assert other is not first
    assert watches.names == [], "reflectors wait for the cache to start"
    cache.start()
    assert watches.names == ["certs", "certs-c"]
    cache.informer("late", "/api/v1/secrets", Decoded)
    assert watches.names == ["certs", "certs-c", "late"]
    with pytest.raises(ValueError, match="already kept in another form"):
        cache.informer("certs", "/apis/x/v1/things", dict, {"labelSelector": "a=b"})
    with pytest.raises(ValueError, match="with another version_of or absent_is_empty"):
        cache.informer("late", "/api/v1/secrets", Decoded, absent_is_empty=True)


def test_a_group_is_one_informer_per_namespace_and_the_same_one_asked_again() -> None:
    watches = RecordedWatches()
    cache = SharedCache(FakeKube(), watches)

    def path(namespace: str | None) -> str:
        return f"/api/v1/namespaces/{namespace}/things" if namespace else "/api/v1/things"

    served = cache.group("things", path, Decoded, ("a", "b"), {"labelSelector": "x=y"})
    again = cache.group("things", path, Decoded, ("b",), {"labelSelector": "x=y"})
    assert again.of("b") is served.of("b")
    assert served.of("c") is None
    everywhere = cache.group("things", path, Decoded, ())
    assert everywhere.of("c") is everywhere.of("a") is not served.of("a")
    cache.start()
    assert watches.names == ["things-a", "things-b", "things-all"]


def test_what_we_wrote_is_held_at_once_and_its_echo_tells_no_one(
    informer: Informer[Decoded],
) -> None:
    informer.apply(ADDED, body("one", "1"))
    changes = heard(informer)
    informer.wrote(body("one", "2", target="x"))
    assert [(c.type, c.new and c.new.secret, c.ours) for c in changes[1:]] == [
        (MODIFIED, "x", True)
    ]
    informer.apply(MODIFIED, body("one", "2", target="x"))  # the watch's echo of our write
    assert len(changes) == 2
    assert informer.keys_by("secret", "x") == {("a", "one")}
    informer.removed(("a", "one"))
    informer.apply(DELETED, body("one", "2", target="x"))
    assert [c.type for c in changes[1:]] == [MODIFIED, DELETED]


def test_an_amended_object_is_changed_quietly_until_its_watch_event(
    informer: Informer[Decoded],
) -> None:
    informer.apply(ADDED, body("one", "1"))
    changes = heard(informer)

    def moved(item: Decoded) -> Decoded:
        amended = copy.copy(item)
        amended.secret = "amended"
        return amended

    informer.amend(("a", "one"), moved)
    informer.amend(("a", "missing"), moved)
    assert len(changes) == 1, "only the replay of what was held"
    assert informer.keys_by("secret", "amended") == {("a", "one")}
    assert informer.keys_by("secret", "s") == set()
    informer.apply(MODIFIED, body("one", "2", target="y"))
    assert [(c.type, c.new and c.new.secret) for c in changes[1:]] == [(MODIFIED, "y")]
    assert informer.keys_by("secret", "amended") == set()


def test_what_is_older_than_what_is_held_tells_no_one(informer: Informer[Decoded]) -> None:
    informer.wrote(body("one", "5", target="ours"))
    changes = heard(informer)
    informer.apply(MODIFIED, body("one", "4", target="late"))  # came before our write
    informer.apply(DELETED, body("one", "3"))  # an earlier incarnation's deletion
    assert len(changes) == 1, "only the replay of what was held"
    held = informer.get(("a", "one"))
    assert held is not None
    assert held.secret == "ours"
    informer.apply(DELETED, body("one", "6"))
    assert informer.get(("a", "one")) is None


def test_a_deletion_whose_version_does_not_compare_is_believed(
    informer: Informer[Decoded],
) -> None:
    # resourceVersions are opaque: one that is not a number cannot be older.
    informer.apply(ADDED, body("one", "v-b"))
    informer.apply(DELETED, body("one", "v-a"))
    assert informer.get(("a", "one")) is None


def test_a_writer_may_hand_over_what_it_decoded_already(informer: Informer[Decoded]) -> None:
    Decoded.count = 0
    decoded = Decoded(body("one", "1", target="known"))
    assert informer.wrote(body("one", "1", target="known"), decoded) is decoded
    assert Decoded.count == 1, "not decoded a second time"
    assert informer.wrote(body("one", "1"), decoded) is None, "nothing newer"
    learned = informer.learned(body("one", "2", target="read"))
    assert learned is not None
    assert learned.secret == "read"


def test_a_group_sends_each_key_to_the_informer_of_its_namespace() -> None:
    group: InformerGroup[Decoded] = InformerGroup({"a": Informer(Decoded), "b": Informer(Decoded)})
    group.add_index("secret", by_secret)
    changes: list[Change[Decoded]] = []
    group.subscribe(changes.append)
    group.learned(body("one", "1", namespace="a"))
    group.wrote(body("two", "2", namespace="b"))
    assert group.learned(body("three", "3", namespace="c")) is None, "not a namespace watched"
    assert sorted(group) == [("a", "one"), ("b", "two")]
    assert len(group) == 2
    assert group.keys_by("secret", "s") == {("a", "one"), ("b", "two")}
    assert [(c.key, c.ours) for c in changes] == [(("a", "one"), False), (("b", "two"), True)]
    group.removed(("b", "two"))
    assert group.get(("b", "two")) is None
    empty: InformerGroup[Decoded] = InformerGroup({None: Informer(Decoded)})
    assert empty.of("anywhere") is not None, "an empty informer of all namespaces is still one"


@pytest.mark.parametrize(
    ("candidate", "current", "expected"),
    [
        ("2", "1", True),
        ("10", "9", True),
        ("1", "1", False),
        ("1", "2", False),
        ("x", "y", True),
        ("x", "x", False),
        ("", "1", True),
    ],
)
def test_newer(candidate: str, current: str, expected: bool) -> None:
    assert newer(candidate, current) is expected


def test_an_item_that_holds_its_version_is_compared_by_it() -> None:
    informer: Informer[Decoded] = Informer(Decoded, version_of=lambda item: item.version)
    changes = heard(informer)
    informer.apply(ADDED, body("one", "5"))
    informer.apply(MODIFIED, body("one", "5", target="repeat"))
    informer.apply(MODIFIED, body("one", "4", target="late"))
    informer.apply(DELETED, body("one", "3"))
    assert [(c.type, c.new and c.new.secret) for c in changes] == [(ADDED, "s")]
    informer.apply(MODIFIED, body("one", "6", target="newer"))
    assert [c.type for c in changes] == [ADDED, MODIFIED]
    assert informer._versions == {}, "not kept twice"
