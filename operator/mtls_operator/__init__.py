"""mtls-operator: MtlsCertificate objects in, ready-to-mount mTLS Secrets out."""

__version__ = "0.1.0"
