"""Logging that does not flood: a warning or error is written once per
distinct cause per minute, however often it recurs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_AFTER = 60.0


class OncePerCause(logging.Filter):
    """Drops a record of WARNING or worse whose logger, message template and
    arguments (numbers aside: a retry delay is no new cause) were logged less
    than a minute ago."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._last: dict[tuple[object, ...], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        cause = (
            record.name,
            str(record.msg),
            *(a for a in args if not isinstance(a, int | float)),
        )
        now = self._clock()
        last = self._last.get(cause)
        if last is not None and now - last < REPEAT_AFTER:
            return False
        if len(self._last) > 10_000:  # causes seen once, long ago, are forgotten
            self._last = {k: v for k, v in self._last.items() if now - v < REPEAT_AFTER}
        self._last[cause] = now
        return True
