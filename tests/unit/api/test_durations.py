from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtls_operator.api.durations import format_duration, parse_duration

td = datetime.timedelta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2160h", td(hours=2160)),
        ("720h", td(days=30)),
        ("1h30m", td(minutes=90)),
        ("90m", td(minutes=90)),
        ("30s", td(seconds=30)),
        ("1.5h", td(minutes=90)),
        (".5h", td(minutes=30)),
        ("1.h", td(hours=1)),
        ("300ms", td(milliseconds=300)),
        ("1h0m0s", td(hours=1)),
        ("2h45m30.5s", td(hours=2, minutes=45, seconds=30.5)),
        ("10us", td(microseconds=10)),
        ("10µs", td(microseconds=10)),
        ("1500ns", td(microseconds=1)),
        ("0", td(0)),
        ("0s", td(0)),
        ("+5m", td(minutes=5)),
        ("-5m", td(minutes=-5)),
    ],
)
def test_parses_go_durations(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "h",
        "5",
        "1d",
        "2160",
        "1 h",
        "1h 30m",
        "1.h.5",
        "..5h",
        "1hh",
        "-",
        "+",
        "5H",
        "1y",
        "1h-5m",
    ],
)
def test_rejects_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_rejects_durations_beyond_go_range() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("2562048h")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (td(hours=2160), "2160h"),
        (td(minutes=90), "1h30m"),
        (td(seconds=30), "30s"),
        (td(0), "0s"),
        (td(seconds=1.5), "1.5s"),
        (td(hours=1, seconds=5), "1h5s"),
        (td(minutes=-2), "-2m"),
    ],
)
def test_formats_shortest_text(value: datetime.timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=td(days=-(10**5)), max_value=td(days=10**5)))
def test_format_then_parse_round_trips(value: datetime.timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


_UNITS = {"h": 3600 * 10**6, "m": 60 * 10**6, "s": 10**6, "ms": 10**3, "us": 1}


@given(
    st.lists(
        st.tuples(st.integers(0, 10**4), st.sampled_from(sorted(_UNITS))), min_size=1, max_size=5
    )
)
def test_sums_components_like_go(components: list[tuple[int, str]]) -> None:
    text = "".join(f"{number}{unit}" for number, unit in components)
    expected = sum(number * _UNITS[unit] for number, unit in components)
    assert parse_duration(text) == td(microseconds=expected)


@given(st.text(max_size=20))
def test_arbitrary_text_parses_or_raises_value_error(text: str) -> None:
    try:
        parse_duration(text)
    except ValueError as err:
        message = str(err)
    else:
        return
    assert "duration" in message
