"""The PKI core: keys, CAs, leaf profiles, revocation lists and inspection.

Pure functions over `cryptography` objects: no Kubernetes, no I/O, and the
current time is always an argument.
"""

from mtls_operator.pki.ca import CertificateAuthority, create_root_ca, load_ca
from mtls_operator.pki.certs import (
    certificates_to_pem,
    chain_problem,
    fingerprint_sha256,
    load_certificates,
    serial_hex,
)
from mtls_operator.pki.crl import (
    CRLFacts,
    Revocation,
    RevocationReason,
    crl_facts,
    crl_to_pem,
    live,
    sign_crl,
)
from mtls_operator.pki.errors import (
    CAError,
    CAProblem,
    CertificateLoadError,
    CRLLoadError,
    KeyLoadError,
    PKIError,
)
from mtls_operator.pki.inspect import (
    CertificateReport,
    ChainReport,
    inspect_certificate,
    inspect_chain,
)
from mtls_operator.pki.keys import (
    KeyAlgorithm,
    KeyEncoding,
    KeySpec,
    PrivateKey,
    PublicKey,
    is_encrypted_pem,
    load_private_key,
    private_key_to_pem,
)
from mtls_operator.pki.leaf import (
    DistinguishedName,
    IssuedCertificate,
    LeafRequest,
    SubjectAltNames,
    Usage,
    issue_leaf,
)

__all__ = [
    "CAError",
    "CAProblem",
    "CRLFacts",
    "CRLLoadError",
    "CertificateAuthority",
    "CertificateLoadError",
    "CertificateReport",
    "ChainReport",
    "DistinguishedName",
    "IssuedCertificate",
    "KeyAlgorithm",
    "KeyEncoding",
    "KeyLoadError",
    "KeySpec",
    "LeafRequest",
    "PKIError",
    "PrivateKey",
    "PublicKey",
    "Revocation",
    "RevocationReason",
    "SubjectAltNames",
    "Usage",
    "certificates_to_pem",
    "chain_problem",
    "create_root_ca",
    "crl_facts",
    "crl_to_pem",
    "fingerprint_sha256",
    "inspect_certificate",
    "inspect_chain",
    "is_encrypted_pem",
    "issue_leaf",
    "live",
    "load_ca",
    "load_certificates",
    "load_private_key",
    "private_key_to_pem",
    "serial_hex",
    "sign_crl",
]
