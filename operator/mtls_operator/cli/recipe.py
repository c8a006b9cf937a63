"""The openssl recipe as files on disk: a CA directory and leaf key pairs,
with the recipe's file names, for `mtls-operator ca init` and `issue`."""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mtls_operator.authorities.layouts import (
    CA_LAYOUTS,
    NoCAFound,
    complete_layout,
    load_ca_from,
)
from mtls_operator.pki import (
    CertificateAuthority,
    IssuedCertificate,
    KeyEncoding,
    KeySpec,
    LeafRequest,
    certificates_to_pem,
    create_root_ca,
    is_encrypted_pem,
    issue_leaf,
    private_key_to_pem,
)

# `ca init` writes the recipe's layout (the last one of the table).
CA_CERT_FILE, CA_KEY_FILE = CA_LAYOUTS[-1]


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
        _refuse_to_replace(key_path, cert_path, what="a CA")
    key = key_spec.generate()
    certificate = create_root_ca(key, common_name, now, lifetime)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_file(key_path, private_key_to_pem(key, KeyEncoding.PKCS8, passphrase))
    write_public_file(cert_path, certificates_to_pem([certificate]))
    return WrittenFiles(key_path, cert_path)


def load_ca_dir(
    ca_dir: Path, now: datetime.datetime, passphrase: bytes | None = None
) -> CertificateAuthority:
    """Load the CA from the first complete layout found in `ca_dir`: the
    same file names, and the same trust-bundle rule, as a CA Secret's keys."""
    if not ca_dir.is_dir():
        raise RecipeError(f"--ca-dir {ca_dir}: no such directory")

    def read(name: str) -> bytes | None:
        path = ca_dir / name
        return path.read_bytes() if path.is_file() else None

    layout = complete_layout(read)
    if layout is not None:
        key_file = ca_dir / layout[1]
        encrypted = is_encrypted_pem(key_file.read_bytes())
        if encrypted and passphrase is None:
            raise RecipeError(
                f"{key_file} is encrypted: give its passphrase with --passphrase-file"
            )
        if passphrase is not None and not encrypted:
            raise RecipeError(f"--passphrase-file given, but {key_file} is not encrypted")
    try:
        return load_ca_from(read, now, passphrase)
    except NoCAFound as err:
        raise RecipeError(f"{ca_dir}: {err}") from None


def issue_to_files(
    ca: CertificateAuthority,
    request: LeafRequest,
    key_spec: KeySpec,
    out_dir: Path,
    now: datetime.datetime,
    *,
    overwrite: bool = False,
) -> tuple[WrittenFiles, IssuedCertificate]:
    """Write `<usage>-key.pem` and `<usage>-crt.pem` (leaf, then intermediates)."""
    prefix = request.usage.value
    key_path, cert_path = out_dir / f"{prefix}-key.pem", out_dir / f"{prefix}-crt.pem"
    if not overwrite:
        _refuse_to_replace(key_path, cert_path, what="a key pair")
    key = key_spec.generate()
    issued = issue_leaf(ca, request, key.public_key(), now)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private_file(key_path, private_key_to_pem(key))
    write_public_file(cert_path, issued.chain_pem)
    return WrittenFiles(key_path, cert_path), issued


def _refuse_to_replace(*paths: Path, what: str) -> None:
    for path in paths:
        if path.exists():
            raise RecipeError(f"{path} already exists; refusing to replace {what} (use --force)")


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
