"""A real TLS handshake between two Python `ssl` ends over a socket pair,
with the server checking the client certificate against a CRL."""

from __future__ import annotations

import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from support.revocation_scene import LeafFiles, RevocationScene

GREETING = b"hello over mTLS"
TIMEOUT_SECONDS = 15


def server_verdict(
    scene: RevocationScene, client: LeafFiles, hostname: str = "localhost"
) -> str | None:
    """Why the server refused `client` (OpenSSL's verify message), or None
    when it completed the handshake and read the client's greeting. The
    client expects the server's certificate to name `hostname`."""
    server_socket, client_socket = socket.socketpair()
    with server_socket, client_socket, ThreadPoolExecutor(max_workers=1) as pool:
        for end in (server_socket, client_socket):
            end.settimeout(TIMEOUT_SECONDS)
        verdict = pool.submit(_serve_once, _server_context(scene), server_socket)
        try:
            with _client_context(scene, client).wrap_socket(
                client_socket, server_hostname=hostname
            ) as tls:
                tls.sendall(GREETING)
                tls.recv(16)
        except OSError:
            pass  # A refused client learns little (in TLS 1.3, after its handshake); the server says why.
        return verdict.result(timeout=TIMEOUT_SECONDS)


def _server_context(scene: RevocationScene) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(scene.server.certificate, scene.server.key)
    context.load_verify_locations(cafile=scene.ca)
    # CRLs are read from a CA file; `cadata` would take certificates only.
    context.load_verify_locations(cafile=scene.crl)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def _client_context(scene: RevocationScene, client: LeafFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=scene.ca)
    context.load_cert_chain(client.certificate, client.key)
    return context


def _serve_once(context: ssl.SSLContext, end: socket.socket) -> str | None:
    try:
        with context.wrap_socket(end, server_side=True) as tls:
            received = tls.recv(len(GREETING))
            tls.sendall(b"ok")
    except ssl.SSLCertVerificationError as err:
        return str(err.verify_message)
    except (ssl.SSLError, OSError) as err:
        return f"handshake failed: {err}"
    return None if received == GREETING else f"read {received!r} instead of the greeting"
