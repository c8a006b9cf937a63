"""Certificate authorities: creating a self-signed root, and loading a CA
(possibly an intermediate with its chain, possibly with an encrypted key)
with precise reasons when it cannot sign."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mtls_operator.pki.certs import (
    certificates_to_pem,
    chain_problem,
    fingerprint_sha256,
    is_ca,
    is_self_issued,
    load_certificates,
    not_after,
    not_before,
    pem_certificate_count,
)
from mtls_operator.pki.errors import CAError, CAProblem, CertificateLoadError, KeyLoadError
from mtls_operator.pki.keys import (
    PrivateKey,
    key_spec_of,
    load_private_key,
    public_key_der,
    signature_hash,
)
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE

DEFAULT_CA_LIFETIME = datetime.timedelta(days=3650)
# The CA's certificate, the CAs above it and extra roots: finding the path
# through them is quadratic (700 certificates take a third of a second, and
# a Secret holds about 1,700 small ones), and every leaf Secret would carry
# the intermediates.
# Trust bundles of many roots belong in `ca.crt`, which is not searched so.
MAX_CA_CERTIFICATES = 32


@dataclass(frozen=True, eq=False)
class CertificateAuthority:
    """A CA ready to sign: its certificate and key, the intermediates that
    leaf chains must carry, and the trust bundle that relying parties use."""

    certificate: x509.Certificate
    private_key: PrivateKey
    intermediates: tuple[x509.Certificate, ...]
    trust_bundle: tuple[x509.Certificate, ...]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_sha256(self.certificate)

    @cached_property
    def quick(self) -> bool:
        """Signs in about 0.1 ms (not an RSA key)."""
        return key_spec_of(self.private_key).quick

    @cached_property
    def trust_bundle_pem(self) -> bytes:
        return certificates_to_pem(self.trust_bundle)

    @cached_property
    def trust_bundle_sha256(self) -> str:
        """What a leaf Secret's `ca.crt` hashes to when it is current."""
        return hashlib.sha256(self.trust_bundle_pem).hexdigest()

    @cached_property
    def key_identifier(self) -> bytes:
        """The CA's subject key identifier: what its leaves' AKI must hold."""
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return x509.SubjectKeyIdentifier.from_public_key(self.private_key.public_key()).digest
        return ski.value.digest

    @property
    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The extension that names this CA by its key in what it signs
        (leaves and CRLs): the key identifier alone, no issuer and serial."""
        return x509.AuthorityKeyIdentifier(
            key_identifier=self.key_identifier,
            authority_cert_issuer=None,
            authority_cert_serial_number=None,
        )

    @cached_property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def not_after(self) -> datetime.datetime:
        return not_after(self.certificate)


def create_root_ca(
    key: PrivateKey,
    common_name: str,
    now: datetime.datetime,
    lifetime: datetime.timedelta = DEFAULT_CA_LIFETIME,
) -> x509.Certificate:
    """A self-signed root that RFC 5280 linters accept: critical CA:TRUE,
    critical keyCertSign + cRLSign, subject and authority key identifiers."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return builder.sign(key, signature_hash(key))


KeyLoader = Callable[[bytes, bytes | None], PrivateKey]


def load_ca(
    certificate_pem: bytes,
    key_pem: bytes,
    now: datetime.datetime,
    passphrase: bytes | None = None,
    trust_bundle_pem: bytes | None = None,
    *,
    load_key: KeyLoader = load_private_key,
) -> CertificateAuthority:
    """Load and check a CA. Raises CAError saying exactly what is wrong.

    `certificate_pem` holds the signing certificate, optionally followed by
    the CAs above it (intermediate first), and may also hold extra roots: the
    signing certificate is the one whose public key matches the key. The trust
    bundle is `trust_bundle_pem` when given, else every root found in
    `certificate_pem`, else the top of the chain. `load_key(pem, passphrase)`
    reads the key (one that remembers what it opened, say).
    """
    certificates = _ca_certificates(certificate_pem)
    key = _ca_key(key_pem, passphrase, load_key)
    signing = _certificate_for_key(certificates, key)
    if signing is None:
        raise CAError(
            CAProblem.KEY_MISMATCH,
            "the CA private key does not match the CA certificate "
            f"{certificates[0].subject.rfc4514_string()!r}",
        )
    subject = signing.subject.rfc4514_string()
    if not is_ca(signing):
        raise CAError(
            CAProblem.NOT_A_CA, f"{subject!r} is not a CA certificate (basicConstraints CA:TRUE)"
        )
    if not _may_sign_certificates(signing):
        raise CAError(CAProblem.NOT_A_CA, f"{subject!r} has a keyUsage without keyCertSign")
    if now > not_after(signing):
        raise CAError(
            CAProblem.EXPIRED, f"the CA {subject!r} expired at {not_after(signing).isoformat()}"
        )
    if now < not_before(signing) - CLOCK_SKEW_BACKDATE:
        raise CAError(
            CAProblem.NOT_YET_VALID,
            f"the CA {subject!r} is not valid before {not_before(signing).isoformat()}",
        )

    path = _path_to_top(signing, certificates)
    intermediates = tuple(c for c in path if not is_self_issued(c))
    bundle = _trust_bundle(trust_bundle_pem, certificates, path)
    # A bundle that cannot verify our own chain would break every relying
    # party after the next issuance; refuse it instead of issuing.
    problem = chain_problem(path, bundle, now)
    if problem is not None:
        raise CAError(
            CAProblem.INCOMPLETE,
            f"the trust bundle does not verify the CA {subject!r}: {problem}",
        )
    return CertificateAuthority(signing, key, intermediates, bundle)


def _ca_certificates(certificate_pem: bytes) -> list[x509.Certificate]:
    # Counted before any is parsed: parsing a Secret full of them costs too.
    count = pem_certificate_count(certificate_pem)
    if count > MAX_CA_CERTIFICATES:
        raise CAError(
            CAProblem.TOO_LARGE,
            f"the CA certificate holds {count} certificates, more than the "
            f"{MAX_CA_CERTIFICATES} accepted (a bundle of roots belongs in ca.crt)",
        )
    try:
        return load_certificates(certificate_pem)
    except CertificateLoadError as err:
        raise CAError(CAProblem.NOT_PEM, f"the CA certificate is unreadable: {err}") from err


def _ca_key(key_pem: bytes, passphrase: bytes | None, load_key: KeyLoader) -> PrivateKey:
    try:
        return load_key(key_pem, passphrase)
    except KeyLoadError as err:
        raise CAError(CAProblem.KEY_UNREADABLE, f"the CA key is unusable: {err}") from err


def _trust_bundle(
    trust_bundle_pem: bytes | None,
    certificates: Sequence[x509.Certificate],
    path: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, ...]:
    """The bundle given, else every root given with the CA, else the top of its chain."""
    if trust_bundle_pem and trust_bundle_pem.strip():
        try:
            return tuple(load_certificates(trust_bundle_pem))
        except CertificateLoadError as err:
            raise CAError(CAProblem.NOT_PEM, f"the CA trust bundle is unreadable: {err}") from err
    roots = tuple(c for c in certificates if is_self_issued(c))
    return roots or (path[-1],)


def _certificate_for_key(
    certificates: Sequence[x509.Certificate], key: PrivateKey
) -> x509.Certificate | None:
    wanted = public_key_der(key)
    for certificate in certificates:
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if spki == wanted:
            return certificate
    return None


def _may_sign_certificates(certificate: x509.Certificate) -> bool:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True  # RFC 5280 allows a CA without keyUsage (the openssl recipe's CA)
    return usage.key_cert_sign


def _path_to_top(
    signing: x509.Certificate, certificates: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """The signing certificate and the issuers above it found in `certificates`."""
    path = [signing]
    current = signing
    while not is_self_issued(current) and len(path) <= len(certificates):
        issuer = next(
            (c for c in certificates if c.subject == current.issuer and c not in path), None
        )
        if issuer is None:
            break
        path.append(issuer)
        current = issuer
    return path
