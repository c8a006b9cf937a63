"""How each kind of field in the operator's objects is read: one parser per
kind (string, list of strings, duration, object name, map of strings), so
that a field of one kind is checked, and its error worded, the same way in
every object. Each schema binds the parsers to its own FieldError."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mtls_operator.api.durations import parse_duration
from mtls_operator.api.errors import FieldError

_T = TypeVar("_T")
MAX_OBJECT_NAME = 253
# What the API server takes as an object name: an RFC 1123 subdomain.
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_object_name(name: str) -> bool:
    return len(name) <= MAX_OBJECT_NAME and _OBJECT_NAME.fullmatch(name) is not None


class Fields:
    """The field parsers of one schema; each raises `invalid` naming the
    field's path (under spec.) and the bad value."""

    def __init__(self, invalid: type[FieldError]) -> None:
        self.invalid = invalid

    def string(
        self, section: Mapping[str, Any], key: str, *, required: bool = False, path: str = ""
    ) -> str:
        """The string at `key`; "" when absent and not required."""
        value = section.get(key)
        where = path or key
        if value is None:
            if required:
                raise self.invalid(where, "", "is required")
            return ""
        if not isinstance(value, str):
            raise self.invalid(where, value, "must be a string")
        if required and not value:
            raise self.invalid(where, value, "must not be empty")
        return value

    def strings(self, section: Mapping[str, Any], key: str, path: str = "") -> list[str]:
        """The list of strings at `key`; empty when absent."""
        where = path or key
        values = section.get(key) or []
        if not isinstance(values, list):
            raise self.invalid(where, values, "must be a list")
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise self.invalid(f"{where}[{index}]", value, "must be a string")
        return values

    def each(
        self, section: Mapping[str, Any], key: str, parse: Callable[[str], _T], path: str = ""
    ) -> list[_T]:
        """Every string of the list at `key`, parsed."""
        where = path or key
        return [
            self.parsed(f"{where}[{index}]", value, parse)
            for index, value in enumerate(self.strings(section, key, where))
        ]

    def parsed(self, path: str, value: str, parse: Callable[[str], _T]) -> _T:
        """`parse(value)`, its ValueError worded as this field's error."""
        try:
            return parse(value)
        except ValueError as err:
            raise self.invalid(path, value, str(err)) from None

    def duration(
        self, section: Mapping[str, Any], key: str, path: str = ""
    ) -> datetime.timedelta | None:
        """A positive Go duration such as 2160h; None when absent."""
        text = section.get(key)
        where = path or key
        if text is None:
            return None
        if not isinstance(text, str):
            raise self.invalid(where, text, "must be a duration string such as 2160h")
        try:
            value = parse_duration(text)
        except ValueError as err:
            raise self.invalid(where, text, str(err).split(": ", 1)[-1]) from None
        if value <= datetime.timedelta(0):
            raise self.invalid(where, text, "must be positive")
        return value

    def object_name(self, path: str, name: str) -> str:
        """A Kubernetes object name, as the API server checks it."""
        if len(name) > MAX_OBJECT_NAME:
            raise self.invalid(path, name, f"must be at most {MAX_OBJECT_NAME} characters")
        if not is_object_name(name):
            raise self.invalid(
                path, name, "must be a lower-case RFC 1123 name (a-z, 0-9, '-' and '.')"
            )
        return name

    def string_map(self, section: Mapping[str, Any], key: str, path: str = "") -> dict[str, str]:
        """The map of strings (labels, annotations) at `key`; empty when absent."""
        where = path or key
        values = section.get(key) or {}
        if not isinstance(values, Mapping):
            raise self.invalid(where, values, "must be a map of strings")
        for name, value in values.items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise self.invalid(f"{where}.{name}", value, "must be a string")
        return dict(values)

    def section(self, parent: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
        """The object at `key`; empty when absent."""
        value = parent.get(key) or {}
        if not isinstance(value, Mapping):
            raise self.invalid(path or key, value, "must be an object")
        return value
