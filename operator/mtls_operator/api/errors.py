"""The one shape of an error in a user's object: the field, the value, why."""

from __future__ import annotations

import json


class FieldError(ValueError):
    """`spec.<field> <value>: <reason>`, on one line."""

    def __init__(self, field_path: str, value: object, reason: str) -> None:
        shown = json.dumps(value) if isinstance(value, str | int | float) else repr(value)
        super().__init__(f"spec.{field_path} {shown}: {reason}")
        self.field_path = field_path
