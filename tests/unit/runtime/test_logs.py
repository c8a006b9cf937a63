"""A warning or error is written once per distinct cause per minute."""

from __future__ import annotations

import logging

from mtls_operator.runtime.logs import REPEAT_AFTER, OncePerCause


def record(message: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("mtls", level, __file__, 1, message, args, None)


def test_a_cause_is_written_once_per_minute_whatever_its_retry_delay() -> None:
    now = [0.0]
    once = OncePerCause(clock=lambda: now[0])
    template = "watch of %s failed (%s); retrying in %.1fs"
    assert once.filter(record(template, "/api/v1/secrets", "refused", 0.5))
    now[0] = 30.0
    assert not once.filter(record(template, "/api/v1/secrets", "refused", 30.0))
    assert once.filter(record(template, "/api/v1/namespaces", "refused", 30.0)), "another cause"
    now[0] = REPEAT_AFTER + 1
    assert once.filter(record(template, "/api/v1/secrets", "refused", 30.0)), "a minute later"


def test_information_is_never_held_back() -> None:
    once = OncePerCause(clock=lambda: 0.0)
    assert all(once.filter(record("issued %s", "a", level=logging.INFO)) for _ in range(3))
