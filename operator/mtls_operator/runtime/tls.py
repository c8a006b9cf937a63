"""The TLS context of a connection to the API server, from what the login
found: the CA to trust (a file, or data from a kubeconfig) and the client
certificate, if any."""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator

import kopf


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    if info.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        context = ssl.create_default_context(cadata=_pem_text(data))
    else:
        context = ssl.create_default_context(
            cafile=os.fsdecode(info.ca_path) if info.ca_path else None
        )
    certificate, key = info.certificate_path, info.private_key_path
    if info.certificate_data or info.private_key_data:
        # The ssl module reads client credentials only from files: write them
        # to owner-only temporary files for the duration of the load.
        with (
            _temporary_file(info.certificate_data) as cert_file,
            _temporary_file(info.private_key_data) as key_file,
        ):
            context.load_cert_chain(cert_file or os.fsdecode(certificate or ""), key_file or None)
    elif certificate:
        context.load_cert_chain(os.fsdecode(certificate), os.fsdecode(key) if key else None)
    return context


def _pem_text(data: str) -> str:
    """kopf hands CA data either as PEM or as base64 of PEM (kubeconfig style)."""
    if "-----BEGIN" in data:
        return data
    return base64.b64decode(data).decode()


@contextlib.contextmanager
def _temporary_file(data: str | bytes | None) -> Iterator[str | None]:
    if not data:
        yield None
        return
    content = data.encode() if isinstance(data, str) else data
    descriptor, path = tempfile.mkstemp(prefix="mtls-operator-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        os.unlink(path)
