"""Leaf certificates: the server, client and both profiles of the openssl
recipe, with the deliberate improvements of the product specification."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field, replace

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtls_operator.pki.ca import CertificateAuthority
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import PublicKey, signature_hash
from mtls_operator.pki.names import IPAddress, is_dns_name, parse_ip_address
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE


class Usage(enum.Enum):
    SERVER = "server"
    CLIENT = "client"
    BOTH = "both"

    @property
    def extended_key_usages(self) -> list[x509.ObjectIdentifier]:
        return {
            Usage.SERVER: [ExtendedKeyUsageOID.SERVER_AUTH],
            Usage.CLIENT: [ExtendedKeyUsageOID.CLIENT_AUTH],
            Usage.BOTH: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        }[self]

    @property
    def serves(self) -> bool:
        return self is not Usage.CLIENT


@dataclass(frozen=True)
class SubjectAltNames:
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.dns_names or self.ip_addresses or self.uris or self.email_addresses)

    def general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns_names]
        names += [x509.IPAddress(ip) for ip in self.ip_addresses]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        names += [x509.RFC822Name(e) for e in self.email_addresses]
        return names


@dataclass(frozen=True)
class DistinguishedName:
    common_name: str | None = None
    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()

    def to_x509(self) -> x509.Name:
        """Attributes in the conventional order, most general first."""
        attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, c) for c in self.countries]
        attributes += [
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, p) for p in self.provinces
        ]
        attributes += [x509.NameAttribute(NameOID.LOCALITY_NAME, loc) for loc in self.localities]
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
        attributes += [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u)
            for u in self.organizational_units
        ]
        if self.common_name:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])


@dataclass(frozen=True)
class LeafRequest:
    """What to certify. `lifetime` counts from the moment of issuance."""

    usage: Usage
    subject: DistinguishedName = field(default_factory=DistinguishedName)
    alt_names: SubjectAltNames = field(default_factory=SubjectAltNames)
    lifetime: datetime.timedelta = datetime.timedelta(days=365)

    def effective_alt_names(self) -> SubjectAltNames:
        """The SAN as issued: a server certificate's Common Name that is a
        host name or IP address is added, because modern TLS clients match
        only the SAN."""
        common_name = self.subject.common_name
        if not self.usage.serves or not common_name:
            return self.alt_names
        if is_dns_name(common_name):
            name = common_name.lower()
            if name not in self.alt_names.dns_names:
                return replace(self.alt_names, dns_names=(name, *self.alt_names.dns_names))
            return self.alt_names
        try:
            ip = parse_ip_address(common_name)
        except ValueError:
            return self.alt_names
        if ip not in self.alt_names.ip_addresses:
            return replace(self.alt_names, ip_addresses=(ip, *self.alt_names.ip_addresses))
        return self.alt_names


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    # True when notAfter was cut back to the CA's own notAfter.
    clamped_to_ca: bool

    @property
    def chain_pem(self) -> bytes:
        """What `tls.crt` holds: the leaf, then the intermediates."""
        return certificates_to_pem((self.certificate, *self.intermediates))


def _leaf_key_usage(is_rsa: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key transport only; RFC 5480 and 8410 forbid it for EC and Ed25519 keys.
        key_encipherment=is_rsa,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue_leaf(
    ca: CertificateAuthority,
    request: LeafRequest,
    public_key: PublicKey,
    now: datetime.datetime,
    *,
    backdate: datetime.timedelta = CLOCK_SKEW_BACKDATE,
    crl_distribution_point: str | None = None,
) -> IssuedCertificate:
    """Sign `public_key` for `request` with `ca`, the recipe's extension file
    plus: keyEncipherment only for RSA keys, a random 159-bit serial,
    notBefore backdated for clock skew, notAfter no later than the CA's;
    with `crl_distribution_point`, the URL relying parties fetch the CA's
    CRL from."""
    alt_names = request.effective_alt_names()
    if request.subject == DistinguishedName() and alt_names.is_empty():
        raise ValueError(
            "a certificate needs a common name or at least one subject alternative name"
        )
    wanted_not_after = now + request.lifetime
    clamped = wanted_not_after > ca.not_after
    subject = request.subject.to_x509()
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(ca.not_after if clamped else wanted_not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(is_rsa), critical=True)
        .add_extension(x509.ExtendedKeyUsage(request.usage.extended_key_usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(ca.authority_key_identifier, critical=False)
    )
    if not alt_names.is_empty():
        # RFC 5280 4.2.1.6: the SAN must be critical when the subject is empty.
        builder = builder.add_extension(
            x509.SubjectAlternativeName(alt_names.general_names()),
            critical=len(subject) == 0,
        )
    if crl_distribution_point is not None:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_distribution_point)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    certificate = builder.sign(ca.private_key, signature_hash(ca.private_key))
    return IssuedCertificate(certificate, ca.intermediates, clamped)
