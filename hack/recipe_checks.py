"""The recipe's own checks with the real tools: openssl (verify, purposes, an
mTLS handshake between s_server and s_client) and the pkilint linter.
Shared by the tests and the demo."""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Two pkilint findings come from the limits of the `validators` package it
# uses, not from RFC 5280; tests accept them only for the names that cause them:
# - domain syntax: single-label names ("localhost") and wildcards, which TLS
#   clients accept;
# - URI syntax: any scheme outside validators.url's list (http, https, ftp,
#   ...), so every spiffe:// and urn: URI, which RFC 5280 allows.
DOMAIN_SYNTAX_FINDING = "pkix.invalid_domain_name_syntax"
URI_SYNTAX_FINDING = "pkix.invalid_uri_syntax"


def _openssl_binary() -> str:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError("openssl is not installed (make tools installs it)")
    return binary


def openssl(
    *args: str, check: bool = True, input_data: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    binary = _openssl_binary()
    return subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
        input=input_data.decode() if input_data is not None else None,
    )


def openssl_verify(
    ca_file: Path, certificate: Path, untrusted: Path | None = None, crl: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`openssl verify`; with `crl`, the leaf is also checked against that CRL."""
    extra = ["-untrusted", str(untrusted)] if untrusted else []
    extra += ["-crl_check", "-CRLfile", str(crl)] if crl else []
    return openssl("verify", "-CAfile", str(ca_file), *extra, str(certificate), check=False)


def openssl_crl_verify(ca_file: Path, crl: Path) -> subprocess.CompletedProcess[str]:
    """`openssl crl -verify`: the CRL's signature checked with the CA's key.
    OpenSSL 3.0 exits 0 even on a bad signature: read stderr, "verify OK"."""
    return openssl(
        "crl", "-in", str(crl), "-verify", "-CAfile", str(ca_file), "-noout", check=False
    )


def openssl_purposes(certificate: Path) -> dict[str, bool]:
    """`openssl x509 -noout -purpose` as {"SSL server": True, ...}."""
    output = openssl("x509", "-in", str(certificate), "-noout", "-purpose").stdout
    purposes = {}
    for line in output.splitlines():
        name, sep, answer = line.rpartition(" : ")
        if sep:
            purposes[name.strip()] = answer.strip() == "Yes"
    return purposes


def pkilint(certificate_pem: Path) -> list[str]:
    """pkilint RFC 5280 findings of WARNING or worse, one per line."""
    return _lint("lint_pkix_cert", str(certificate_pem))


def pkilint_crl(crl: Path) -> list[str]:
    """pkilint's RFC 5280 CRL profile (PKIX, a CRL rather than an ARL):
    findings of WARNING or worse, one per line."""
    return _lint("lint_crl", "-t", "CRL", "-p", "PKIX", str(crl))


def _lint(linter: str, *args: str) -> list[str]:
    command = Path(sys.executable).parent / linter
    result = subprocess.run(
        [str(command), "lint", "-s", "WARNING", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # The exit status is the number of findings; a crash shows on stderr.
    if result.stderr.strip():
        raise RuntimeError(f"{linter} failed: {result.stderr.strip()}")
    return [
        line.strip()
        for line in result.stdout.splitlines()
        if re.search(r"\((FATAL|ERROR|WARNING)\)", line)
    ]


@dataclass(frozen=True)
class Handshake:
    succeeded: bool
    server_output: str
    client_output: str


def mtls_handshake(
    *,
    server_cert: Path,
    server_key: Path,
    server_trusts: Path,
    client_cert: Path,
    client_key: Path,
    client_trusts: Path,
    hostname: str = "localhost",
    server_crl: Path | None = None,
) -> Handshake:
    """The recipe's check: `openssl s_server -Verify 1` and `openssl s_client`
    with client certificates. Succeeds only when the server received the
    client's message over a connection both sides verified. With
    `server_crl`, the server also refuses a client certificate it revokes."""
    message = f"mtls-handshake-{time.monotonic_ns()}"
    binary = _openssl_binary()
    server = subprocess.Popen(
        [
            binary,
            "s_server",
            "-accept",
            "0",
            "-naccept",
            "1",
            "-cert",
            str(server_cert),
            "-key",
            str(server_key),
            "-CAfile",
            str(server_trusts),
            "-Verify",
            "1",
            "-verify_return_error",
            *(["-CRL", str(server_crl), "-crl_check"] if server_crl else []),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server_lines: queue.Queue[str | None] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(server.stdout, server_lines), daemon=True)
    pump.start()
    client: subprocess.Popen[str] | None = None
    server_output: list[str] = []
    try:
        port = _wait_for(server_lines, server_output, re.compile(r"ACCEPT .*:(\d+)$"))
        if port is None:
            raise RuntimeError("openssl s_server did not start: " + "".join(server_output))
        client = subprocess.Popen(
            [
                binary,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-cert",
                str(client_cert),
                "-key",
                str(client_key),
                "-CAfile",
                str(client_trusts),
                "-verify_return_error",
                "-verify_hostname",
                hostname,
                "-servername",
                hostname,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if client.stdin is None:
            raise RuntimeError("s_client has no stdin")
        client.stdin.write(message + "\n")
        client.stdin.flush()
        # Either the message arrives or the server reports why it refused the client.
        outcome = _wait_for(
            server_lines, server_output, re.compile(rf"{re.escape(message)}|^ERROR$|:error:")
        )
        received = outcome is not None and message in outcome
        # EOF on s_client's stdin closes the session cleanly; EOF on
        # s_server's stdin stops the server.
        client_output, _ = client.communicate(timeout=30)
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
        _wait_for(server_lines, server_output, None)
    finally:
        for process in (server, client):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        pump.join(timeout=10)
        for stream in (server.stdin, server.stdout):
            if stream is not None:
                stream.close()
    succeeded = (
        received and client.returncode == 0 and "Verify return code: 0 (ok)" in client_output
    )
    return Handshake(
        succeeded, "".join(server_output), f"exit status {client.returncode}\n{client_output}"
    )


def _pump(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    if stream is None:
        return
    for line in stream:
        lines.put(line)
    lines.put(None)


def _wait_for(
    lines: queue.Queue[str | None],
    seen: list[str],
    pattern: re.Pattern[str] | None,
    timeout: float = 15.0,
) -> str | None:
    """Collect output until `pattern` matches a line (returns the first group
    or the line), or until the stream ends or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            return None
        if line is None:
            return None
        seen.append(line)
        if pattern is not None and (found := pattern.search(line.strip())):
            return found.group(1) if found.groups() else line
    return None
