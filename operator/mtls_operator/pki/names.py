"""Syntax of the names a certificate can carry: DNS names, IP addresses,
URIs and e-mail addresses.

Each `parse_*` function returns the normalised form or raises ValueError
with a short reason; callers prefix it with the field and the value.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX_DNS_NAME = 253
_MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# RFC 3986 unreserved, reserved and '%' (checked separately as pct-encoding).
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_PCT_ENCODED = re.compile(r"%(?![0-9A-Fa-f]{2})")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_MAX_EMAIL_LOCAL = 64
_MAX_EMAIL = 254


def parse_dns_name(text: str, *, allow_wildcard: bool = True) -> str:
    """A host name of RFC 1123 letters, digits and hyphens, lower-cased.

    A wildcard is allowed only as the whole left-most label and must be
    followed by at least two labels (`*.example.com`, not `*.com`).
    """
    if not text:
        raise ValueError("a DNS name must not be empty")
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
        if not _LABEL.match(label):
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
    try:
        parse_dns_name(text)
    except ValueError:
        return False
    return True


def parse_ip_address(text: str) -> IPAddress:
    """An IPv4 or IPv6 address, without prefix length or zone."""
    if "/" in text:
        raise ValueError("an IP address must not have a prefix length")
    if "%" in text:
        raise ValueError("an IP address must not have a zone")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address") from None


def is_ip_address(text: str) -> bool:
    """An address `parse_ip_address` accepts."""
    try:
        parse_ip_address(text)
    except ValueError:
        return False
    return True


def parse_uri(text: str) -> str:
    """An absolute URI (scheme:rest) made of RFC 3986 characters, as X.509 requires."""
    if not text.isascii():
        raise ValueError("a URI must be ASCII; percent-encode other characters")
    if not _URI_SCHEME.match(text):
        raise ValueError("a URI must start with a scheme such as spiffe: or https:")
    scheme, _, rest = text.partition(":")
    if not rest:
        raise ValueError(f"the URI has nothing after '{scheme}:'")
    if not _URI_CHARS.match(text):
        raise ValueError("a URI must not contain spaces or characters outside RFC 3986")
    if _PCT_ENCODED.search(text):
        raise ValueError("'%' in a URI must start a two-digit hex escape")
    if rest.startswith("//"):
        authority = rest[2:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        if not authority and scheme.lower() != "file":
            raise ValueError("the URI has an empty authority (host) after '//'")
    return text


def parse_email_address(text: str) -> str:
    """A plain `local@domain` mailbox (RFC 5321 dot-atom local part)."""
    if not text.isascii():
        raise ValueError("an e-mail address must be ASCII")
    if len(text) > _MAX_EMAIL:
        raise ValueError(f"an e-mail address must be at most {_MAX_EMAIL} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise ValueError("an e-mail address must look like name@example.com")
    if len(local) > _MAX_EMAIL_LOCAL or not _EMAIL_LOCAL.match(local):
        raise ValueError(f"the part before '@' ({local!r}) is not a valid mailbox name")
    try:
        domain = parse_dns_name(domain, allow_wildcard=False)
    except ValueError as err:
        raise ValueError(f"the domain after '@' is invalid: {err}") from None
    return f"{local}@{domain}"
