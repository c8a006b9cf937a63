"""A Secret's `data` as the API carries it (base64) and as the code uses it (bytes)."""

from __future__ import annotations

import base64
from collections.abc import Mapping


def encode_data(data: Mapping[str, bytes]) -> dict[str, str]:
    return {key: base64.b64encode(value).decode() for key, value in data.items()}


def decode_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    """Values that are not base64 read as empty, which every reader treats
    as missing."""
    decoded = {}
    for key, value in (data or {}).items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except ValueError:
            decoded[key] = b""
    return decoded
