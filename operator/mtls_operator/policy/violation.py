"""What every check of a decision returns when it objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    reason: str
    message: str
    # Whether looking again later may find it resolved even if no watched
    # object changes (a blocked object is otherwise looked at again when
    # it, or something it depends on, changes).
    retry: bool = False
