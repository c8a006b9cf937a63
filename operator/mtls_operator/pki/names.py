"""Syntax of the names a certificate can carry: DNS names, IP addresses,
URIs, e-mail addresses, and the text of subject attributes.

Each `parse_*` function returns the normalised form or raises ValueError
with a short reason; callers prefix it with the field and the value.

Every pattern is matched against the whole text (`fullmatch`): `re.match`
with `$` also accepts a trailing newline, which would then be signed.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote, unquote_to_bytes

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_DNS_NAME = 253
_MAX_LABEL = 63
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# RFC 3986 unreserved, reserved and '%' (checked separately as pct-encoding).
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_AUTHORITY_END = re.compile(r"[/?#]")
_PCT_ENCODED = re.compile(r"%(?![0-9A-Fa-f]{2})")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MAX_EMAIL_LOCAL = 64
_MAX_EMAIL = 254
# What separates or escapes the attributes of a distinguished name written as
# a string: RFC 4514's , + ; = \ " < > and OpenSSL's one-line / (which is
# also how many proxies pass a client's subject on). A relying party that
# parses such a string could read `checkout/O=team-b` as two attributes.
_DN_SEPARATORS = frozenset('/=,+;\\"<>')


# Control characters (C0, DEL, C1) and the Unicode line and paragraph
# separators: each starts a new line in some tool that prints the name.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})


def _control_character(text: str) -> str | None:
    """The first control character or line separator in `text`, if any."""
    return next((c for c in text if unicodedata.category(c) in _LINE_BREAKING), None)


def _refuse_control_characters(text: str, what: str) -> None:
    found = _control_character(text)
    if found is not None:
        raise ValueError(f"{what} must not contain control characters (found {found!r})")


def parse_dns_name(text: str, *, allow_wildcard: bool = True) -> str:
    """A host name of RFC 1123 letters, digits and hyphens, lower-cased.

    A wildcard is allowed only as the whole left-most label and must be
    followed by at least two labels (`*.example.com`, not `*.com`).
    """
    if not text:
        raise ValueError("a DNS name must not be empty")
    _refuse_control_characters(text, "a DNS name")
    if not text.isascii():
        raise ValueError("a DNS name must be ASCII; write internationalised names in xn-- form")
    if text.endswith("."):
        raise ValueError("a DNS name must not end with a dot")
    if len(text) > _MAX_DNS_NAME:
        raise ValueError(f"a DNS name must be at most {_MAX_DNS_NAME} characters")
    if is_ip_address(text):
        raise ValueError("this is an IP address; list it under IP addresses")
    labels = text.lower().split(".")
    if labels[0] == "*":
        _check_wildcard(labels, allow_wildcard)
        labels = labels[1:]
    for label in labels:
        if "*" in label:
            raise ValueError("a wildcard may only be the whole left-most label")
        if not label:
            raise ValueError("a DNS name must not have empty labels")
        if len(label) > _MAX_LABEL:
            raise ValueError(f"label {label!r} is longer than {_MAX_LABEL} characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"label {label!r} must consist of a-z, 0-9 and '-', "
                "and start and end with a letter or digit"
            )
    return text.lower()


def _check_wildcard(labels: list[str], allowed: bool) -> None:
    if not allowed:
        raise ValueError("a wildcard is not allowed here")
    if len(labels) < 3:
        raise ValueError("a wildcard must be followed by at least two labels (*.example.com)")


def is_dns_name(text: str) -> bool:
    """A name `parse_dns_name` accepts."""
    return _accepts(parse_dns_name, text)


def parse_ip_address(text: str) -> IPAddress:
    """An IPv4 or IPv6 address, without prefix length or zone.

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is refused: Go's and Java's
    TLS stacks take it for the IPv4 address a.b.c.d, so a grant of an IPv6
    range would grant IPv4 addresses outside it. IPv4-compatible (::a.b.c.d)
    and 6to4 (2002::/16) addresses are IPv6 addresses to those stacks, and
    are judged as such.
    """
    if "/" in text:
        raise ValueError("an IP address must not have a prefix length")
    if "%" in text:
        raise ValueError("an IP address must not have a zone")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(
            f"an IPv4-mapped IPv6 address, which TLS clients take for "
            f"{address.ipv4_mapped}: write {address.ipv4_mapped} if that is meant"
        )
    return address


def is_ip_address(text: str) -> bool:
    """An address `parse_ip_address` accepts."""
    return _accepts(parse_ip_address, text)


def _accepts(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def parse_uri(text: str) -> str:
    """An absolute URI (scheme:rest) made of RFC 3986 characters, as X.509
    requires, whose path has no dot segments.

    A path segment `.` or `..`, written out or percent-encoded (`%2e%2e`,
    also behind an encoded `%2f`), is refused: a relying party that
    normalises the path would read `spiffe://td/ns/a/../b/sa/x` as an
    identity of namespace b, while a policy's prefix `spiffe://td/ns/a/*`
    matches the text as written. So are percent-encoded control characters.
    """
    _refuse_control_characters(text, "a URI")
    if not text.isascii():
        raise ValueError("a URI must be ASCII; percent-encode other characters")
    scheme, colon, rest = text.partition(":")
    if not colon or not _URI_SCHEME.fullmatch(scheme):
        raise ValueError("a URI must start with a scheme such as spiffe: or https:")
    if not rest:
        raise ValueError(f"the URI has nothing after '{scheme}:'")
    if not _URI_CHARS.fullmatch(text):
        raise ValueError("a URI must not contain spaces or characters outside RFC 3986")
    if _PCT_ENCODED.search(text):
        raise ValueError("'%' in a URI must start a two-digit hex escape")
    path = rest
    if rest.startswith("//"):
        authority = _AUTHORITY_END.split(rest[2:], maxsplit=1)[0]
        path = rest[2 + len(authority) :]
        if not authority and scheme.lower() != "file":
            raise ValueError("the URI has an empty authority (host) after '//'")
    if _has_encoded_control_character(text):
        raise ValueError("a URI must not contain percent-encoded control characters")
    _check_path(path.split("?", 1)[0].split("#", 1)[0])
    return text


def _has_encoded_control_character(text: str) -> bool:
    ascii_control = any(b < 0x20 or b == 0x7F for b in unquote_to_bytes(text))
    return ascii_control or _control_character(unquote(text, errors="replace")) is not None


def _check_path(path: str) -> None:
    decoded = unquote(path, errors="replace")
    # Backslashes too: some parsers take them for slashes (WHATWG URLs do).
    segments = decoded.replace("\\", "/").split("/")
    if any(segment in (".", "..") for segment in segments):
        raise ValueError(
            "a URI's path must not have '.' or '..' segments (also percent-encoded): "
            "relying parties that resolve them would read another identity"
        )


def parse_email_address(text: str) -> str:
    """A plain `local@domain` mailbox (RFC 5321 dot-atom local part)."""
    _refuse_control_characters(text, "an e-mail address")
    if not text.isascii():
        raise ValueError("an e-mail address must be ASCII")
    if len(text) > _MAX_EMAIL:
        raise ValueError(f"an e-mail address must be at most {_MAX_EMAIL} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise ValueError("an e-mail address must look like name@example.com")
    if len(local) > _MAX_EMAIL_LOCAL or not _EMAIL_LOCAL.fullmatch(local):
        raise ValueError(f"the part before '@' ({local!r}) is not a valid mailbox name")
    try:
        domain = parse_dns_name(domain, allow_wildcard=False)
    except ValueError as err:
        raise ValueError(f"the domain after '@' is invalid: {err}") from None
    return f"{local}@{domain}"


def parse_subject_text(text: str) -> str:
    """The value of a descriptive subject attribute (O, L, ST): any text
    but control characters, which would be signed and printed as they are."""
    if not text:
        raise ValueError("must not be empty")
    _refuse_control_characters(text, "a subject attribute")
    return text


def parse_subject_identity(text: str) -> str:
    """A Common Name or Organizational Unit, which servers authorise on: text
    that no parser of distinguished names written as strings can split or
    read differently. Control characters, the separators , + ; = / and the
    escapes \\ " < > are refused anywhere, a leading '#' (RFC 4514 reads the
    rest as hex-encoded DER) and leading or trailing spaces (which parsers
    trim) at the ends."""
    parse_subject_text(text)
    separator = next((c for c in text if c in _DN_SEPARATORS), None)
    if separator is not None:
        raise ValueError(
            f"must not contain {separator!r}: relying parties that parse subjects written "
            "as strings (CN=a,O=b or /CN=a/O=b) would read more attributes into it"
        )
    if text.startswith("#"):
        raise ValueError("must not start with '#', which string forms read as encoded data")
    if text != text.strip(" "):
        raise ValueError("must not start or end with a space, which string forms trim")
    return text
