"""cert-manager's `usages` list, read as the one `usage` it means here.

The operator's profiles fix the key usage (digitalSignature, and
keyEncipherment for RSA keys); only the extended key usage is a choice.
So `server auth` and `client auth` pick the profile, the two key usages
every profile has are accepted and add nothing, and any other usage is one
the operator cannot issue."""

from __future__ import annotations

from collections.abc import Iterable

from mtls_operator.pki import Usage

SERVER_AUTH = "server auth"
CLIENT_AUTH = "client auth"
# Already in every certificate the operator issues (keyEncipherment for RSA
# keys only, where it has a meaning), so listing them changes nothing.
IMPLIED_USAGES = frozenset({"digital signature", "key encipherment"})
ACCEPTED_USAGES = (SERVER_AUTH, CLIENT_AUTH, *sorted(IMPLIED_USAGES))

_PROFILES = {
    frozenset({SERVER_AUTH}): Usage.SERVER,
    frozenset({CLIENT_AUTH}): Usage.CLIENT,
    frozenset({SERVER_AUTH, CLIENT_AUTH}): Usage.BOTH,
}


class UnsupportedUsages(ValueError):
    """The list, or the one entry of it, that has no profile here."""

    def __init__(self, index: int | None, value: object, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.value = value


def usage_from_usages(usages: Iterable[object]) -> Usage:
    """The profile a cert-manager `usages` list asks for."""
    listed = list(usages)
    for index, entry in enumerate(listed):
        if not isinstance(entry, str):
            raise UnsupportedUsages(index, entry, "must be a string")
        if entry not in ACCEPTED_USAGES:
            raise UnsupportedUsages(
                index,
                entry,
                "the operator issues only server auth and client auth certificates "
                f"(accepted: {', '.join(ACCEPTED_USAGES)})",
            )
    wanted = frozenset(str(entry) for entry in listed) - IMPLIED_USAGES
    profile = _PROFILES.get(wanted)
    if profile is None:
        raise UnsupportedUsages(None, listed, "must include server auth, client auth or both")
    return profile
