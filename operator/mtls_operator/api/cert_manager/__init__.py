"""cert-manager `Certificate`, `Issuer` and `ClusterIssuer` objects,
converted to MtlsCertificates. Pure: parsed YAML in, documents, notes and
refusals out; reading files and printing is the command line's job."""

from mtls_operator.api.cert_manager.convert import convert_documents
from mtls_operator.api.cert_manager.model import Conversion, Converted, Refusal, Skipped

__all__ = ["Conversion", "Converted", "Refusal", "Skipped", "convert_documents"]
