from __future__ import annotations

import ast
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtls_operator.pki.names import (
    is_dns_name,
    parse_dns_name,
    parse_email_address,
    parse_ip_address,
    parse_uri,
)

from support.paths import REPO_ROOT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("payments", "payments"),
        ("payments.shop.svc", "payments.shop.svc"),
        ("Payments.Shop.SVC", "payments.shop.svc"),
        ("*.shop.svc.cluster.local", "*.shop.svc.cluster.local"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c-d", "a-b.c-d"),
        ("0pay.example", "0pay.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_accepts_dns_names(text: str, expected: str) -> None:
    assert parse_dns_name(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("payments.", "end with a dot"),
        ("foo_bar.example", "must consist of"),
        ("-pay.example", "must consist of"),
        ("pay-.example", "must consist of"),
        ("pay..example", "empty labels"),
        ("*.com", "at least two labels"),
        ("*", "at least two labels"),
        ("foo.*.example.com", "whole left-most label"),
        ("f*.example.com", "whole left-most label"),
        ("bücher.example", "ASCII"),
        ("10.0.0.1", "IP address"),
        ("a" * 64 + ".example", "longer than 63"),
        (".".join(["abcdefgh"] * 29), "at most 253"),
        ("pay ments.example", "must consist of"),
    ],
)
def test_rejects_bad_dns_names(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_dns_name(text)


def test_wildcard_can_be_refused() -> None:
    with pytest.raises(ValueError, match="wildcard is not allowed"):
        parse_dns_name("*.example.com", allow_wildcard=False)


_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")


@given(st.lists(_LABEL, min_size=1, max_size=6))
def test_every_rfc1123_name_is_accepted(labels: list[str]) -> None:
    name = ".".join(labels)
    try:
        ipaddress.ip_address(name)
    except ValueError:
        assert parse_dns_name(name) == name
        assert parse_dns_name("*." + name + ".example") == "*." + name + ".example"


@given(st.text(max_size=40))
def test_arbitrary_text_is_a_name_or_a_value_error(text: str) -> None:
    try:
        result = parse_dns_name(text)
    except ValueError:
        assert not is_dns_name(text)
    else:
        assert result == text.lower()
        assert is_dns_name(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.12", ipaddress.IPv4Address("10.0.0.12")),
        ("127.0.0.1", ipaddress.IPv4Address("127.0.0.1")),
        ("::1", ipaddress.IPv6Address("::1")),
        ("2001:DB8::1", ipaddress.IPv6Address("2001:db8::1")),
    ],
)
def test_accepts_ip_addresses(text: str, expected: object) -> None:
    assert parse_ip_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.0.0.0/8", "prefix length"),
        ("fe80::1%eth0", "zone"),
        ("10.0.0.256", "not an IPv4"),
        ("010.0.0.1", "not an IPv4"),
        ("payments", "not an IPv4"),
        ("", "not an IPv4"),
    ],
)
def test_rejects_bad_ip_addresses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_ip_address(text)


@given(st.ip_addresses())
def test_every_ip_address_round_trips(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        with pytest.raises(ValueError, match="IPv4-mapped"):
            parse_ip_address(str(address))
    else:
        assert parse_ip_address(str(address)) == address


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://cluster.local/ns/shop/sa/payments",
        "https://payments.shop.svc/health?x=1#top",
        "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "spiffe://cluster.local/path%20with%20escape",
    ],
)
def test_accepts_uris(text: str) -> None:
    assert parse_uri(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("payments", "scheme"),
        ("/relative/path", "scheme"),
        ("1http://x", "scheme"),
        ("spiffe:", "nothing after"),
        ("spiffe://", "empty authority"),
        ("spiffe://cluster.local/a b", "spaces"),
        ("spiffe://cluster.local/ü", "ASCII"),
        ("spiffe://cluster.local/%zz", "hex escape"),
        ("https://x/<script>", "outside RFC 3986"),
    ],
)
def test_rejects_bad_uris(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ops@example.com", "ops@example.com"),
        ("first.last+tag@Example.COM", "first.last+tag@example.com"),
    ],
)
def test_accepts_email_addresses(text: str, expected: str) -> None:
    assert parse_email_address(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ops", "name@example.com"),
        ("@example.com", "name@example.com"),
        ("ops@", "domain after '@'"),
        ("a..b@example.com", "not a valid mailbox"),
        ("ops@*.example.com", "wildcard"),
        ("öps@example.com", "ASCII"),
        ("ops@exa_mple.com", "domain after '@'"),
    ],
)
def test_rejects_bad_email_addresses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_email_address(text)


def _unescaped_dollar(pattern: str) -> bool:
    """Whether `pattern` has a `$` anchor (not escaped, not in a character class)."""
    in_class, escaped = False, False
    for character in pattern:
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
        elif character == "[":
            in_class = True
        elif character == "]":
            in_class = False
        elif character == "$" and not in_class:
            return True
    return False


def test_no_pattern_of_the_operator_anchors_with_a_dollar() -> None:
    """`$` also matches before a trailing newline, so `re.match(r"^...$")`
    accepts `name\\n`: the operator's patterns are matched whole
    (`fullmatch`) or end in `\\Z`."""
    operator = REPO_ROOT / "operator"
    found = []
    for path in operator.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and _unescaped_dollar(node.args[0].value)
            ):
                found.append(f"{path.relative_to(operator)}:{node.lineno}")
    assert found == []
