"""Test CAs. Every CA certificate is built here, directly with `cryptography`
so that it does not depend on the code under test; `make_ca` then loads one
the way the operator does."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from mtls_operator.pki import CertificateAuthority, KeySpec, PrivateKey, load_ca
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem

from support.clock import NOW

DEFAULT_KEY = KeySpec()
# As `mtls-operator ca init` does, so that a CA made `now` already signs at `now`.
CLOCK_SKEW_BACKDATE = datetime.timedelta(minutes=5)


def ca_key_usage(*, crl_sign: bool = True) -> x509.KeyUsage:
    """A CA's keyUsage: it signs certificates, and CRLs unless told not to."""
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


CA_KEY_USAGE = ca_key_usage()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _digest(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def ca_certificate(
    key: PrivateKey,
    *,
    common_name: str,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
) -> x509.Certificate:
    """A CA certificate as RFC 5280 wants one: critical CA:TRUE, critical
    keyCertSign and cRLSign, subject and authority key identifiers. Signed
    by `issuer` (certificate, key), with a path length of 0, if given;
    self-signed otherwise."""
    subject_key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    if issuer is None:
        issuer_name, issuer_key_id, signing_key, path_length = (
            _name(common_name),
            subject_key_id,
            key,
            None,
        )
    else:
        issuer_certificate, signing_key = issuer
        issuer_name, path_length = issuer_certificate.subject, 0
        issuer_key_id = issuer_certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(subject_key_id, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id),
            critical=False,
        )
        .sign(signing_key, _digest(signing_key))
    )


def root_ca(
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    common_name: str = "Test Root CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed ECDSA root valid from `not_before` to `not_after`, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = ca_certificate(
        key, common_name=common_name, not_before=not_before, not_after=not_after
    )
    return certificate, key


def intermediate_ca(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    now: datetime.datetime,
    common_name: str = "Test Intermediate CA",
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An ECDSA intermediate under the root, valid for a year from `now`, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = ca_certificate(
        key,
        common_name=common_name,
        not_before=now - datetime.timedelta(days=1),
        not_after=now + datetime.timedelta(days=365),
        issuer=(root_cert, root_key),
    )
    return certificate, key


def make_ca(
    key_spec: KeySpec = DEFAULT_KEY,
    common_name: str = "Test Root CA",
    now: datetime.datetime = NOW,
    lifetime: datetime.timedelta = datetime.timedelta(days=3650),
    *,
    key: PrivateKey | None = None,
) -> CertificateAuthority:
    """A root CA made at `now`, as the operator loads it; with `key`, the
    same key re-certified (a renewed root)."""
    key = key or key_spec.generate()
    certificate = ca_certificate(
        key,
        common_name=common_name,
        not_before=now - CLOCK_SKEW_BACKDATE,
        not_after=now + lifetime,
    )
    return load_ca(certificates_to_pem([certificate]), private_key_to_pem(key), now)


def intermediate_authority(root: CertificateAuthority) -> CertificateAuthority:
    """An intermediate CA under `root`, loaded from the chain `kubectl create
    secret tls` would hold: intermediate first, then the root."""
    certificate, key = intermediate_ca(root.certificate, root.private_key, NOW)
    return load_ca(
        certificates_to_pem([certificate, root.certificate]), private_key_to_pem(key), NOW
    )


def with_next_root(
    ca: CertificateAuthority, common_name: str = "Next Root CA"
) -> CertificateAuthority:
    """The same signing CA whose trust bundle also holds a second root, as
    after step 1 of a CA rotation."""
    next_root = make_ca(common_name=common_name).certificate
    return load_ca(
        certificates_to_pem([ca.certificate, *ca.intermediates]),
        private_key_to_pem(ca.private_key),
        NOW,
        trust_bundle_pem=certificates_to_pem([*ca.trust_bundle, next_root]),
    )


def root_from_ca_init(directory: Path, common_name: str) -> tuple[bytes, bytes]:
    """A fresh root CA from the installed `mtls-operator ca init`: its
    certificate and key (PEM)."""
    command = str(Path(sys.executable).parent / "mtls-operator")
    subprocess.run(
        [command, "ca", "init", "--out", str(directory), "--common-name", common_name],
        check=True,
        capture_output=True,
    )
    return (directory / "ca-crt.pem").read_bytes(), (directory / "ca-key.pem").read_bytes()


def plain_certificate(
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    *,
    ca: bool | None,
    key_usage: x509.KeyUsage | None = None,
    not_after: datetime.datetime | None = None,
    common_name: str = "Plain",
) -> x509.Certificate:
    """A self-signed certificate with exactly the extensions asked for: what
    a CA Secret may hold that is not a CA."""
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=10))
        .not_valid_after(not_after or now + datetime.timedelta(days=10))
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return builder.sign(key, hashes.SHA256())
