"""Parts of API objects kept for as long as the object exists (records and
facts of every certificate and Secret), made compact: the JSON decoder
gives every object its own copy of each string, so that 50,000 certificates
would hold 50,000 copies of "lastTransitionTime", of every annotation name
and of the CA's fingerprint. Kept parts share one interned copy instead."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

# Values up to this long are interned too: the same CA fingerprint, issuer,
# condition, kind and label in every object, and the same UID, serial and
# times in a certificate's record and its Secret's facts. (An interned string
# is freed with its last reference.) Longer ones, messages, are left alone.
MAX_INTERNED = 100


def kept(value: Any) -> Any:
    """`value` (decoded JSON) with its keys and short strings interned;
    mappings and lists are copied (still a dict, a list: what is kept
    compares equal to what the API sends), the rest is shared."""
    if isinstance(value, Mapping):
        return {sys.intern(str(key)): kept(item) for key, item in value.items()}
    if isinstance(value, list):
        return [kept(item) for item in value]
    if type(value) is str and len(value) <= MAX_INTERNED:
        return sys.intern(value)
    return value


def kept_mapping(value: object) -> dict[str, Any]:
    """A kept copy of a mapping field, or {} when it is missing or not one."""
    return kept(value) if isinstance(value, Mapping) else {}
