"""The MtlsPolicy spec, parsed: which namespaces it selects and which
identities it grants them beyond the namespace default.

Patterns are plain on purpose (no regular expressions): an administrator
must be able to read a policy and know exactly what it grants, and a
regular expression is easy to get subtly wrong (an unescaped dot, a missing
anchor) in a way that grants the whole internet.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.errors import FieldError
from mtls_operator.api.fields import Fields
from mtls_operator.pki import Usage
from mtls_operator.pki.names import (
    IPAddress,
    is_dns_name,
    is_ip_address,
    parse_dns_name,
    parse_email_address,
    parse_subject_identity,
    parse_uri,
)

POLICY_KIND = "MtlsPolicy"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class InvalidPolicy(FieldError):
    """A policy that grants nothing until fixed; the message names the field."""


FIELDS = Fields(InvalidPolicy)


class _GrantsNothing(ValueError):
    """An entry that can grant nothing, by the rules of names signed as they
    were judged: it is reported and the rest of the policy stands, so that a
    policy written before those rules keeps its other grants."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        inside = labels.get(self.key) in self.values
        return inside if self.operator == "In" else not inside


@dataclass(frozen=True)
class LabelSelector:
    """A standard Kubernetes label selector; the empty one selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True)
class DNSPattern:
    """`api.example.com` exactly, or `*.example.com`: every name under
    example.com at any depth (wildcard names included), not example.com itself."""

    text: str

    def grants(self, name: str) -> bool:
        if self.text.startswith("*."):
            return name.endswith(self.text[1:])
        return name == self.text


@dataclass(frozen=True)
class URIPattern:
    """A URI exactly, or a prefix ending in `/*`: every URI under it."""

    text: str

    def grants(self, uri: str) -> bool:
        if self.text.endswith("/*"):
            return uri.startswith(self.text[:-1]) and len(uri) > len(self.text) - 1
        return uri == self.text


@dataclass(frozen=True)
class EmailPattern:
    """`ops@example.com` exactly, or `*@example.com`: any mailbox of that domain."""

    text: str

    def grants(self, address: str) -> bool:
        local, _, domain = address.rpartition("@")
        pattern_local, _, pattern_domain = self.text.rpartition("@")
        if domain.lower() != pattern_domain.lower():
            return False
        return pattern_local in ("*", local)


@dataclass(frozen=True)
class Grants:
    dns_names: tuple[DNSPattern, ...] = ()
    ip_networks: tuple[IPNetwork, ...] = ()
    uris: tuple[URIPattern, ...] = ()
    email_addresses: tuple[EmailPattern, ...] = ()
    common_names: frozenset[str] = frozenset()
    organizational_units: frozenset[str] = frozenset()

    def grants_ip(self, address: IPAddress) -> bool:
        return any(address in network for network in self.ip_networks)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    selector: LabelSelector
    grants: Grants
    usages: frozenset[Usage]
    max_duration: datetime.timedelta | None
    # The entries that grant nothing, each as `spec.<field> <value>: <why>`.
    ignored: tuple[str, ...] = ()

    def applies_to(self, usage: Usage, duration: datetime.timedelta) -> bool:
        """Whether this policy's grants count for a certificate of this
        usage and lifetime."""
        within = self.max_duration is None or duration <= self.max_duration
        return usage in self.usages and within


def parse_selector_string(text: str) -> LabelSelector:
    """A label selector as kubectl's -l takes it: `k=v`, `k!=v`, `k`, `!k`,
    `k in (a,b)`, `k notin (a,b)`, joined by commas. Raises ValueError."""
    labels: list[tuple[str, str]] = []
    requirements: list[Requirement] = []
    for term in _selector_terms(text):
        if match := _SET_TERM.fullmatch(term):
            key, operator, values = match.group(1), match.group(2), match.group(3)
            listed = frozenset(v.strip() for v in values.split(",") if v.strip())
            if not listed:
                raise ValueError(f"{term!r}: give at least one value")
            requirements.append(Requirement(key, "In" if operator == "in" else "NotIn", listed))
        elif "!=" in term:
            key, _, value = term.partition("!=")
            requirements.append(Requirement(key.strip(), "NotIn", frozenset({value.strip()})))
        elif "=" in term:
            key, _, value = term.replace("==", "=").partition("=")
            labels.append((key.strip(), value.strip()))
        elif term.startswith("!"):
            requirements.append(Requirement(term[1:].strip(), "DoesNotExist", frozenset()))
        else:
            requirements.append(Requirement(term, "Exists", frozenset()))
    if any(not key for key, _ in labels) or any(not r.key for r in requirements):
        raise ValueError(f"{text!r}: a label key is empty")
    return LabelSelector(tuple(sorted(labels)), tuple(requirements))


_SET_TERM = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)\s*")


def _selector_terms(text: str) -> list[str]:
    """Split at the commas that are not inside a set's parentheses."""
    terms, depth, current = [], 0, ""
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += character
    terms.append(current.strip())
    if depth != 0 or any(not t for t in terms):
        raise ValueError(f"{text!r}: not a label selector such as team=a,env in (prod)")
    return terms


def parse_policy(name: str, spec: Mapping[str, Any]) -> PolicySpec:
    """Validate and type an MtlsPolicy's `.spec`; raises InvalidPolicy."""
    if not isinstance(spec, Mapping):
        raise InvalidPolicy("", spec, "must be an object")
    allow = FIELDS.section(spec, "allow")
    ignored: list[str] = []
    grants = Grants(
        dns_names=tuple(_each(allow, "dnsNames", _dns_pattern, ignored)),
        ip_networks=tuple(_each(allow, "ipAddresses", _network, ignored)),
        uris=tuple(_each(allow, "uris", _uri_pattern, ignored)),
        email_addresses=tuple(_each(allow, "emailAddresses", _email_pattern, ignored)),
        common_names=frozenset(_each(allow, "commonNames", _common_name, ignored)),
        organizational_units=frozenset(
            _each(allow, "organizationalUnits", _organizational_unit, ignored)
        ),
    )
    usages = spec.get("usages")
    if usages is None:
        allowed_usages = frozenset(Usage)
    else:
        allowed_usages = frozenset(_each(spec, "usages", _usage, ignored, prefix=""))
    return PolicySpec(
        name=name,
        selector=_selector(spec.get("namespaceSelector")),
        grants=grants,
        usages=allowed_usages,
        max_duration=FIELDS.duration(spec, "maxDuration"),
        ignored=tuple(ignored),
    )


def _each(
    section: Mapping[str, Any],
    key: str,
    parse: Any,
    ignored: list[str],
    *,
    prefix: str = "allow.",
) -> list[Any]:
    parsed = []
    for index, value in enumerate(FIELDS.strings(section, key, f"{prefix}{key}")):
        try:
            parsed.append(parse(value))
        except _GrantsNothing as err:
            ignored.append(str(FieldError(f"{prefix}{key}[{index}]", value, str(err))))
        except ValueError as err:
            raise InvalidPolicy(f"{prefix}{key}[{index}]", value, str(err)) from None
    return parsed


def _dns_pattern(text: str) -> DNSPattern:
    if text.startswith("*."):
        # Any name after the wildcard, a single label too: `*.internal` is
        # how a private top-level domain is granted.
        parse_dns_name(text[2:], allow_wildcard=False)
        return DNSPattern(text.lower())
    if "*" in text:
        raise ValueError("a wildcard may only be a leading '*.'")
    return DNSPattern(parse_dns_name(text, allow_wildcard=False))


def _network(text: str) -> IPNetwork:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        raise ValueError(f"not a CIDR such as 10.20.0.0/16 ({err})") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_IPV4_MAPPED):
        # Certificates never carry such addresses (names.parse_ip_address).
        raise _GrantsNothing(
            "IPv4-mapped IPv6 addresses are never signed (TLS clients take them for IPv4 "
            "addresses): grant the IPv4 network instead"
        )
    return network


def _uri_pattern(text: str) -> URIPattern:
    body = text[:-1] + "x" if text.endswith("/*") else text
    if "*" in body:
        raise ValueError("'*' may only end the pattern, after a '/' (spiffe://example.org/*)")
    parse_uri(body)
    return URIPattern(text)


def _email_pattern(text: str) -> EmailPattern:
    local, at, domain = text.rpartition("@")
    if at and local == "*":
        parse_email_address(f"x@{domain}")
        return EmailPattern(f"*@{domain.lower()}")
    if "*" in text:
        raise ValueError("a wildcard may only be the whole part before '@' (*@example.com)")
    return EmailPattern(parse_email_address(text))


def _common_name(text: str) -> str:
    try:
        parse_subject_identity(text)
    except ValueError as err:
        raise _GrantsNothing(str(err)) from None
    if is_dns_name(text) or is_ip_address(text):
        # What identity.py judges a serving certificate's Common Name by.
        raise _GrantsNothing(
            "a host name or IP address, which a server certificate's Common Name is judged "
            "as (its SAN holds it too): grant it in dnsNames or ipAddresses; a client's "
            "Common Name needs no grant"
        )
    return text


def _organizational_unit(text: str) -> str:
    try:
        return parse_subject_identity(text)
    except ValueError as err:
        raise _GrantsNothing(str(err)) from None


def _usage(text: str) -> Usage:
    try:
        return Usage(text)
    except ValueError:
        raise ValueError("must be server, client or both") from None


def _selector(selector: object) -> LabelSelector:
    if selector is None:
        raise InvalidPolicy("namespaceSelector", None, "is required ({} selects every namespace)")
    if not isinstance(selector, Mapping):
        raise InvalidPolicy("namespaceSelector", selector, "must be a label selector")
    labels = FIELDS.string_map(selector, "matchLabels", "namespaceSelector.matchLabels")
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise InvalidPolicy("namespaceSelector.matchExpressions", expressions, "must be a list")
    return LabelSelector(
        tuple(sorted(labels.items())),
        tuple(_requirement(index, e) for index, e in enumerate(expressions)),
    )


def _requirement(index: int, expression: object) -> Requirement:
    where = f"namespaceSelector.matchExpressions[{index}]"
    if not isinstance(expression, Mapping):
        raise InvalidPolicy(where, expression, "must be an object with key and operator")
    key, operator = expression.get("key"), expression.get("operator")
    if not isinstance(key, str) or not key:
        raise InvalidPolicy(f"{where}.key", key, "is required")
    if operator not in _SELECTOR_OPERATORS:
        raise InvalidPolicy(
            f"{where}.operator", operator, "must be In, NotIn, Exists or DoesNotExist"
        )
    values = FIELDS.strings(expression, "values", f"{where}.values")
    if operator in ("In", "NotIn") and not values:
        raise InvalidPolicy(f"{where}.values", values, f"must not be empty for {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise InvalidPolicy(f"{where}.values", values, f"must be empty for {operator}")
    return Requirement(key, operator, frozenset(values))
