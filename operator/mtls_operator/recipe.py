"""The openssl recipe as files on disk: a CA directory and leaf key pairs,
with the recipe's file names, for `mtls-operator ca init` and `issue`."""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mtls_operator.pki import (
    CertificateAuthority,
    IssuedCertificate,
    KeyEncoding,
    KeySpec,
    LeafRequest,
    certificates_to_pem,
    create_root_ca,
    issue_leaf,
    load_ca,
    private_key_to_pem,
)

CA_KEY_FILE = "ca-key.pem"
CA_CERT_FILE = "ca-crt.pem"
# Layouts accepted in a CA directory, in order of preference; the same
# layouts a CA Secret may use, so a directory can be turned into a Secret.
CA_FILE_LAYOUTS = (
    (CA_CERT_FILE, CA_KEY_FILE),
    ("ca.crt", "ca.key"),
    ("tls.crt", "tls.key"),
)
TRUST_BUNDLE_FILE = "ca.crt"


class RecipeError(Exception):
    """A problem with the files of the recipe; the message is for the user."""


@dataclass(frozen=True)
class WrittenFiles:
    key: Path
    certificate: Path


def read_passphrase(path: Path) -> bytes:
    """The first line of the file, as `openssl ... -passin file:` reads it."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise RecipeError(f"cannot read passphrase file {path}: {err.strerror}") from err
    if not lines or not lines[0]:
        raise RecipeError(f"passphrase file {path} is empty")
    return lines[0]


def init_ca(
    out_dir: Path,
    *,
    common_name: str,
    lifetime: datetime.timedelta,
    key_spec: KeySpec,
    now: datetime.datetime,
    passphrase: bytes | None = None,
    overwrite: bool = False,
) -> WrittenFiles:
    """Create `ca-key.pem` and `ca-crt.pem` in `out_dir`."""
    key_path, cert_path = out_dir / CA_KEY_FILE, out_dir / CA_CERT_FILE
    if not overwrite:
        for path in (key_path, cert_path):
            if path.exists():
                raise RecipeError(f"{path} already exists; refusing to replace a CA (use --force)")
    key = key_spec.generate()
    certificate = create_root_ca(key, common_name, now, lifetime)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_file(key_path, private_key_to_pem(key, KeyEncoding.PKCS8, passphrase))
    write_public_file(cert_path, certificates_to_pem([certificate]))
    return WrittenFiles(key_path, cert_path)


def load_ca_dir(
    ca_dir: Path, now: datetime.datetime, passphrase: bytes | None = None
) -> CertificateAuthority:
    """Load the CA from the first complete layout found in `ca_dir`."""
    for cert_name, key_name in CA_FILE_LAYOUTS:
        cert_path, key_path = ca_dir / cert_name, ca_dir / key_name
        if cert_path.is_file() and key_path.is_file():
            bundle_path = ca_dir / TRUST_BUNDLE_FILE
            bundle = (
                bundle_path.read_bytes()
                if cert_name == "tls.crt" and bundle_path.is_file()
                else None
            )
            return load_ca(cert_path.read_bytes(), key_path.read_bytes(), now, passphrase, bundle)
    expected = " or ".join(f"{c} + {k}" for c, k in CA_FILE_LAYOUTS)
    raise RecipeError(f"no CA found in {ca_dir}: expected {expected}")


def issue_to_files(
    ca: CertificateAuthority,
    request: LeafRequest,
    key_spec: KeySpec,
    out_dir: Path,
    now: datetime.datetime,
) -> tuple[WrittenFiles, IssuedCertificate]:
    """Write `<usage>-key.pem` and `<usage>-crt.pem` (leaf, then intermediates)."""
    key = key_spec.generate()
    issued = issue_leaf(ca, request, key.public_key(), now)
    prefix = request.usage.value
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = out_dir / f"{prefix}-key.pem", out_dir / f"{prefix}-crt.pem"
    write_private_file(key_path, private_key_to_pem(key))
    write_public_file(cert_path, issued.chain_pem)
    return WrittenFiles(key_path, cert_path), issued


def write_private_file(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 from the start: the key is never
    readable by others, not even for an instant."""
    _write_atomically(path, data, 0o600)


def write_public_file(path: Path, data: bytes) -> None:
    _write_atomically(path, data, 0o644)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
