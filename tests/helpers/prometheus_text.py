"""A strict reader of the Prometheus text exposition format (0.0.4), enough
to check what the operator serves: comments, samples, label escaping."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}

Labels = frozenset[tuple[str, str]]


class ExpositionError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    name: str
    kind: str = "untyped"
    help: str = ""
    samples: list[Sample] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """Families by name; raises ExpositionError on anything malformed."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    seen: set[tuple[str, Labels]] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        try:
            if line.startswith("#"):
                _comment(line, families)
            else:
                sample = _sample(line)
                family = _family_of(sample.name, families)
                series = (sample.name, frozenset(sample.labels.items()))
                if series in seen:
                    raise ExpositionError(f"duplicate series {series}")
                seen.add(series)
                family.samples.append(sample)
        except ExpositionError as err:
            raise ExpositionError(f"line {number}: {err}: {line!r}") from None
    return families


def _comment(line: str, families: dict[str, Family]) -> None:
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
        return  # a plain comment
    name = parts[2]
    if not _NAME.fullmatch(name):
        raise ExpositionError(f"bad metric name {name!r}")
    family = families.setdefault(name, Family(name))
    if parts[1] == "TYPE":
        kind = parts[3] if len(parts) > 3 else ""
        if kind not in _TYPES:
            raise ExpositionError(f"unknown type {kind!r}")
        if family.samples:
            raise ExpositionError("TYPE after samples")
        family.kind = kind
    else:
        family.help = _unescape_help(parts[3] if len(parts) > 3 else "")


def _family_of(sample_name: str, families: dict[str, Family]) -> Family:
    if sample_name in families:
        return families[sample_name]
    for family in families.values():
        suffixes = _SUFFIXES.get(family.kind, ())
        if any(sample_name == family.name + suffix for suffix in suffixes):
            return family
    raise ExpositionError(f"sample {sample_name!r} has no TYPE")


def _sample(line: str) -> Sample:
    match = _NAME.match(line)
    if match is None:
        raise ExpositionError("a sample must start with a metric name")
    name, position = match.group(), match.end()
    labels: dict[str, str] = {}
    if line[position : position + 1] == "{":
        labels, position = _labels(line, position + 1)
    if line[position : position + 1] != " ":
        raise ExpositionError("expected a space before the value")
    fields = line[position + 1 :].split(" ")
    if len(fields) not in (1, 2):
        raise ExpositionError("expected a value and an optional timestamp")
    return Sample(name, labels, _value(fields[0]))


def _labels(line: str, position: int) -> tuple[dict[str, str], int]:
    labels: dict[str, str] = {}
    while True:
        if line[position : position + 1] == "}":
            return labels, position + 1
        match = _LABEL_NAME.match(line, position)
        if match is None:
            raise ExpositionError(f"bad label name at {position}")
        label, position = match.group(), match.end()
        if line[position : position + 2] != '="':
            raise ExpositionError(f'expected =" after label {label}')
        value, position = _quoted(line, position + 2)
        if label in labels:
            raise ExpositionError(f"label {label} given twice")
        labels[label] = value
        if line[position : position + 1] == ",":
            position += 1
        elif line[position : position + 1] != "}":
            raise ExpositionError("expected , or } after a label value")


def _quoted(line: str, position: int) -> tuple[str, int]:
    chars: list[str] = []
    while position < len(line):
        char = line[position]
        if char == '"':
            return "".join(chars), position + 1
        if char == "\\":
            escaped = line[position + 1 : position + 2]
            if escaped not in _ESCAPES:
                raise ExpositionError(f"bad escape \\{escaped}")
            chars.append(_ESCAPES[escaped])
            position += 2
            continue
        chars.append(char)
        position += 1
    raise ExpositionError("unterminated label value")


def _unescape_help(text: str) -> str:
    # HELP text escapes backslash and newline only.
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def _value(text: str) -> float:
    specials = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in specials:
        return specials[text]
    if not _NUMBER.fullmatch(text):
        raise ExpositionError(f"bad value {text!r}")
    return float(text)
