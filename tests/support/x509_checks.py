"""Assertions that parse real certificates and check every extension with
its critical flag, so a profile cannot drift silently."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import CRLEntryExtensionOID, ExtendedKeyUsageOID, ExtensionOID

from mtls_operator.pki import Usage

from support import der

_EKUS = {
    Usage.SERVER: [ExtendedKeyUsageOID.SERVER_AUTH],
    Usage.CLIENT: [ExtendedKeyUsageOID.CLIENT_AUTH],
    Usage.BOTH: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
}


def extension(
    certificate: x509.Certificate, oid: x509.ObjectIdentifier
) -> x509.Extension[x509.ExtensionType]:
    return certificate.extensions.get_extension_for_oid(oid)


def assert_is_leaf(certificate: x509.Certificate, issuer: x509.Certificate, usage: Usage) -> None:
    oids = {e.oid for e in certificate.extensions}
    assert oids <= {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }, oids
    assert certificate.version is x509.Version.v3

    constraints = extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    assert constraints.critical
    assert isinstance(constraints.value, x509.BasicConstraints)
    assert constraints.value.ca is False

    key_usage = extension(certificate, ExtensionOID.KEY_USAGE)
    assert key_usage.critical
    assert isinstance(key_usage.value, x509.KeyUsage)
    assert key_usage.value.digital_signature
    is_rsa = isinstance(certificate.public_key(), rsa.RSAPublicKey)
    assert key_usage.value.key_encipherment is is_rsa
    assert not key_usage.value.key_cert_sign
    assert not key_usage.value.crl_sign
    assert not key_usage.value.content_commitment
    assert not key_usage.value.data_encipherment
    assert not key_usage.value.key_agreement

    ekus = extension(certificate, ExtensionOID.EXTENDED_KEY_USAGE)
    assert not ekus.critical
    assert isinstance(ekus.value, x509.ExtendedKeyUsage)
    assert list(ekus.value) == _EKUS[usage]

    ski = extension(certificate, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(certificate.public_key())

    aki = extension(certificate, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    assert not aki.critical
    assert isinstance(aki.value, x509.AuthorityKeyIdentifier)
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.value.key_identifier == issuer_ski.digest
    assert aki.value.authority_cert_issuer is None

    assert certificate.issuer == issuer.subject
    certificate.verify_directly_issued_by(issuer)
    assert 0 < certificate.serial_number < 2**159
    if ExtensionOID.SUBJECT_ALTERNATIVE_NAME in oids:
        san = extension(certificate, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        assert san.critical is (len(certificate.subject) == 0)


def assert_is_root_ca(certificate: x509.Certificate) -> None:
    assert certificate.issuer == certificate.subject
    constraints = extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    assert constraints.critical
    assert isinstance(constraints.value, x509.BasicConstraints)
    assert constraints.value.ca is True
    key_usage = extension(certificate, ExtensionOID.KEY_USAGE)
    assert key_usage.critical
    assert isinstance(key_usage.value, x509.KeyUsage)
    assert key_usage.value.key_cert_sign
    assert key_usage.value.crl_sign
    assert not key_usage.value.key_encipherment
    assert not extension(certificate, ExtensionOID.SUBJECT_KEY_IDENTIFIER).critical
    certificate.verify_directly_issued_by(certificate)


def alt_names(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [f"{type(n).__name__}:{n.value}" for n in san]


def assert_is_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> None:
    """An RFC 5280 v2 CRL of `issuer`: signed by it, named after it, with
    exactly a non-critical CRL Number and a non-critical Authority Key
    Identifier holding the issuer's subject key identifier."""
    assert _crl_version(crl) == 1  # v2
    assert crl.issuer == issuer.subject
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert crl.next_update_utc is not None
    assert crl.last_update_utc < crl.next_update_utc
    assert [e.oid for e in crl.extensions] == [
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ]
    assert not any(e.critical for e in crl.extensions)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value
    assert 0 <= number.crl_number < 2**159
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == issuer_ski.digest
    assert aki.authority_cert_issuer is None
    assert aki.authority_cert_serial_number is None
    serials = [entry.serial_number for entry in crl]
    assert serials == sorted(set(serials))
    for entry in crl:
        assert [e.oid for e in entry.extensions] in ([], [CRLEntryExtensionOID.CRL_REASON])
        assert not any(e.critical for e in entry.extensions)


def _crl_version(crl: x509.CertificateRevocationList) -> int:
    """The TBSCertList's version, which `cryptography` does not expose: the
    INTEGER it starts with, absent in a v1 CRL."""
    _, tbs, _ = der.split_first(crl.tbs_certlist_bytes)
    tag, version, _ = der.split_first(tbs)
    assert tag == der.INTEGER, "version is absent (a v1 CRL)"
    return int.from_bytes(version, "big")
