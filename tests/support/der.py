"""Just enough DER to look at, or cut, fields that `cryptography` neither
exposes nor builds (a CRL's version, a CRL without nextUpdate)."""

from __future__ import annotations

SEQUENCE = 0x30
INTEGER = 0x02


def split_first(der: bytes) -> tuple[int, bytes, bytes]:
    """The tag and content octets of the value `der` starts with, and what follows it."""
    if der[1] < 0x80:
        start, length = 2, der[1]
    else:
        octets = der[1] & 0x7F
        start, length = 2 + octets, int.from_bytes(der[2 : 2 + octets], "big")
    return der[0], der[start : start + length], der[start + length :]


def encode(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content
