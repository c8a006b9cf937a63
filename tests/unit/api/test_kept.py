"""What the store keeps of API objects: equal to what the API sent, with one
shared copy of each key and short string however many objects hold it."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from mtls_operator.api.kept import MAX_INTERNED, kept, kept_mapping


class Reason(StrEnum):
    ISSUED = "Issued"


def decoded(uid: str) -> dict[str, Any]:
    long = "m" * (MAX_INTERNED + 1)
    decoded: dict[str, Any] = json.loads(
        json.dumps(
            {
                "conditions": [{"type": "Ready", "status": "True", "message": long}],
                "revision": 3,
                "uid": uid,
            }
        )
    )
    return decoded


def test_kept_is_equal_to_what_was_decoded_and_keeps_its_types() -> None:
    original = decoded("uid-1")
    copy = kept(original)
    assert copy == original
    assert isinstance(copy["conditions"], list)
    assert copy["conditions"] is not original["conditions"]


def test_keys_and_short_values_are_shared_between_objects() -> None:
    first, second = kept(decoded("uid-1")), kept(decoded("uid-1"))
    (key_1,), (key_2,) = ([k for k in d if k == "conditions"] for d in (first, second))
    assert key_1 is key_2
    assert first["uid"] is second["uid"]
    assert first["conditions"][0]["status"] is second["conditions"][0]["status"]
    assert first["conditions"][0]["message"] is not second["conditions"][0]["message"]


def test_what_is_not_a_plain_string_or_mapping_is_left_as_it_is() -> None:
    assert type(kept({"reason": Reason.ISSUED})["reason"]) is Reason
    assert kept_mapping(None) == {}
    assert kept_mapping(["not", "a", "mapping"]) == {}
