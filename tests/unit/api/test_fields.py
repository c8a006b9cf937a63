"""The field parsers every schema shares: each kind of field is checked, and
its error worded, the same way in every object."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

import pytest

from mtls_operator.api.errors import FieldError
from mtls_operator.api.fields import MAX_OBJECT_NAME, Fields, is_object_name

FIELDS = Fields(FieldError)


@pytest.mark.parametrize(
    ("parse", "message"),
    [
        (lambda: FIELDS.string({}, "name", required=True), 'spec.name "": is required'),
        (lambda: FIELDS.string({"name": ""}, "name", required=True), "must not be empty"),
        (lambda: FIELDS.string({"name": 1}, "name"), "spec.name 1: must be a string"),
        (lambda: FIELDS.strings({"names": "a"}, "names"), "must be a list"),
        (lambda: FIELDS.strings({"names": ["a", 1]}, "names"), "spec.names[1] 1: must be"),
        (lambda: FIELDS.each({"n": ["1", "x"]}, "n", int), 'spec.n[1] "x": invalid literal'),
        (lambda: FIELDS.duration({"d": 5}, "d"), "must be a duration string such as 2160h"),
        (lambda: FIELDS.duration({"d": "5"}, "d"), 'spec.d "5": expected e.g. 2160h'),
        (lambda: FIELDS.duration({"d": "-1h"}, "d"), "must be positive"),
        (lambda: FIELDS.object_name("n", "Web"), "must be a lower-case RFC 1123 name"),
        (lambda: FIELDS.object_name("n", "a" * 254), "must be at most 253 characters"),
        (lambda: FIELDS.string_map({"l": ["a"]}, "l"), "must be a map of strings"),
        (lambda: FIELDS.string_map({"l": {"a": 1}}, "l"), "spec.l.a 1: must be a string"),
        (lambda: FIELDS.section({"s": ["x"]}, "s"), "spec.s ['x']: must be an object"),
    ],
)
def test_each_kind_of_field_names_the_field_and_the_value(
    parse: Callable[[], Any], message: str
) -> None:
    with pytest.raises(FieldError, match=re.escape(message)):
        parse()


def test_absent_fields_read_as_empty() -> None:
    assert FIELDS.string({}, "name") == ""
    assert FIELDS.strings({}, "names") == []
    assert FIELDS.duration({}, "d") is None
    assert FIELDS.string_map({}, "l") == {}
    assert FIELDS.section({}, "s") == {}


def test_present_fields_read_as_written() -> None:
    assert FIELDS.each({"n": ["1", "2"]}, "n", int) == [1, 2]
    assert FIELDS.duration({"d": "1h30m"}, "d") == datetime.timedelta(minutes=90)
    assert FIELDS.string_map({"l": {"a": "b"}}, "l") == {"a": "b"}


@pytest.mark.parametrize(
    ("name", "valid"),
    [("web", True), ("web.shop-1", True), ("a" * MAX_OBJECT_NAME, True), ("Web", False)],
)
def test_object_names_are_rfc_1123_subdomains(name: str, valid: bool) -> None:
    assert is_object_name(name) is valid
