"""A CA, its CRL and three leaves on disk, for checking revocation with real
TLS stacks: a server, a client the CRL revokes and a client it does not."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from mtls_operator.pki import (
    CertificateAuthority,
    DistinguishedName,
    KeySpec,
    LeafRequest,
    Revocation,
    RevocationReason,
    Usage,
    crl_to_pem,
    issue_leaf,
    sign_crl,
)
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem

CRL_PERIOD = datetime.timedelta(days=1)


@dataclass(frozen=True)
class LeafFiles:
    certificate: Path
    key: Path
    serial_number: int


@dataclass(frozen=True)
class RevocationScene:
    ca: Path
    crl: Path
    server: LeafFiles
    revoked_client: LeafFiles
    good_client: LeafFiles


def revocation_scene(
    directory: Path, ca: CertificateAuthority, now: datetime.datetime
) -> RevocationScene:
    """Leaves issued by `ca` at `now`, and a CRL valid from `now` for a day
    that lists the revoked client among certificates of every other reason."""
    directory.mkdir(parents=True, exist_ok=True)
    server = _leaf(directory / "server", ca, Usage.SERVER, "localhost", now)
    revoked = _leaf(directory / "revoked-client", ca, Usage.CLIENT, "revoked-client", now)
    good = _leaf(directory / "good-client", ca, Usage.CLIENT, "good-client", now)
    not_after = now + datetime.timedelta(days=30)
    others = [
        Revocation(serial, now, reason, not_after)
        for serial, reason in enumerate(RevocationReason, 1)
        if reason is not RevocationReason.KEY_COMPROMISE
    ]
    revocations = [
        *others,
        Revocation(revoked.serial_number, now, RevocationReason.KEY_COMPROMISE, not_after),
    ]
    der = sign_crl(ca, revocations, number=1, this_update=now, next_update=now + CRL_PERIOD)
    crl = directory / "crl.pem"
    crl.write_bytes(crl_to_pem(der))
    bundle = directory / "ca.pem"
    bundle.write_bytes(ca.trust_bundle_pem)
    return RevocationScene(bundle, crl, server, revoked, good)


def _leaf(
    prefix: Path, ca: CertificateAuthority, usage: Usage, common_name: str, now: datetime.datetime
) -> LeafFiles:
    key = KeySpec().generate()
    request = LeafRequest(usage, DistinguishedName(common_name=common_name))
    issued = issue_leaf(ca, request, key.public_key(), now)
    certificate, key_file = prefix.with_suffix(".crt.pem"), prefix.with_suffix(".key.pem")
    certificate.write_bytes(certificates_to_pem([issued.certificate]))
    key_file.touch(mode=0o600)
    key_file.write_bytes(private_key_to_pem(key))
    return LeafFiles(certificate, key_file, issued.certificate.serial_number)
