"""Go duration syntax (`time.ParseDuration`), as cert-manager and Kubernetes
users write it: "2160h", "1h30m", "90s", "1.5h", "300ms"."""

from __future__ import annotations

import datetime
import re
from fractions import Fraction

_NANOSECONDS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_COMPONENT = re.compile(r"(\d*)(?:\.(\d*))?([a-zµμ]+)")
_MAX_NANOSECONDS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds


def parse_duration(text: str) -> datetime.timedelta:
    """Parse a Go duration; sub-microsecond parts are truncated.

    Raises ValueError with a message that shows the accepted forms.
    """
    original = text
    sign = 1
    if text and text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return datetime.timedelta(0)
    if not text:
        raise ValueError(f"invalid duration {original!r}: expected e.g. 2160h, 90m or 1h30m")
    total = Fraction(0)
    position = 0
    while position < len(text):
        match = _COMPONENT.match(text, position)
        if match is None or not (match.group(1) or match.group(2)):
            raise ValueError(f"invalid duration {original!r}: expected e.g. 2160h, 90m or 1h30m")
        whole, fraction, unit = match.groups()
        if unit not in _NANOSECONDS_PER_UNIT:
            raise ValueError(
                f"invalid duration {original!r}: unknown unit {unit!r} (use h, m, s, ms, us or ns)"
            )
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * _NANOSECONDS_PER_UNIT[unit]
        position = match.end()
    if total > _MAX_NANOSECONDS:
        raise ValueError(f"invalid duration {original!r}: too long")
    microseconds = int(total) // 1000
    return datetime.timedelta(microseconds=sign * microseconds)


def format_duration(value: datetime.timedelta) -> str:
    """The shortest Go duration text for `value`, such as "2160h" or "1h30m5s"."""
    microseconds = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if microseconds < 0 else ""
    microseconds = abs(microseconds)
    if microseconds == 0:
        return "0s"
    hours, rest = divmod(microseconds, 3600 * 1_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if seconds or fraction:
        text = str(seconds)
        if fraction:
            text += "." + f"{fraction:06d}".rstrip("0")
        parts.append(f"{text}s")
    return sign + "".join(parts)
