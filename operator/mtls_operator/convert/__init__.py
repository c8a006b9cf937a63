"""cert-manager `Certificate`, `Issuer` and `ClusterIssuer` objects,
converted to MtlsCertificates. Pure: parsed YAML in, documents, notes and
refusals out; reading files and printing is the command line's job."""

from mtls_operator.convert.documents import convert_documents
from mtls_operator.convert.model import Conversion, Converted, Refusal, Skipped

__all__ = ["Conversion", "Converted", "Refusal", "Skipped", "convert_documents"]
