"""The openssl recipe end to end without a cluster: a CA, a server and a
client certificate from `mtls-operator`, then the recipe's own checks with
the real openssl binary and a real mTLS handshake. Prints a summary table."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from recipe_checks import mtls_handshake, openssl_purposes, openssl_verify, pkilint

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".demo" / "offline"
COMMAND = str(Path(sys.executable).parent / "mtls-operator")


def step(*args: str) -> None:
    print("$ " + shlex.join(["mtls-operator", *args]))
    subprocess.run([COMMAND, *args], check=True)


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    out = str(OUT)
    step("ca", "init", "--out", out, "--common-name", "Demo CA")
    step(
        "issue",
        "server",
        "--ca-dir",
        out,
        "--common-name",
        "localhost",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
    )
    step("issue", "client", "--ca-dir", out, "--common-name", "client-1")

    ca = OUT / "ca-crt.pem"
    rows: list[tuple[str, str, bool]] = []
    for name in ("server", "client"):
        certificate = OUT / f"{name}-crt.pem"
        verified = openssl_verify(ca, certificate).returncode == 0
        rows.append((f"openssl verify {name}-crt.pem", "OK" if verified else "FAILED", verified))
        purposes = openssl_purposes(certificate)
        wanted = "SSL server" if name == "server" else "SSL client"
        other = "SSL client" if name == "server" else "SSL server"
        right = purposes.get(wanted) is True and purposes.get(other) is False
        rows.append((f"{name} purpose", f"{wanted}: Yes, {other}: No", right))
        findings = pkilint(certificate)
        # "localhost" is a single-label name, which pkilint's domain check flags.
        lint_ok = all("invalid_domain_name_syntax" in f for f in findings)
        rows.append(
            (
                f"pkilint {name}",
                f"{len(findings)} finding(s) (single-label names only)" if findings else "clean",
                lint_ok,
            )
        )
    handshake = mtls_handshake(
        server_cert=OUT / "server-crt.pem",
        server_key=OUT / "server-key.pem",
        server_trusts=ca,
        client_cert=OUT / "client-crt.pem",
        client_key=OUT / "client-key.pem",
        client_trusts=ca,
    )
    rows.append(
        (
            "mTLS handshake s_server -Verify 1 / s_client",
            "OK" if handshake.succeeded else "FAILED",
            handshake.succeeded,
        )
    )

    width = max(len(check) for check, _, _ in rows)
    print(
        f"\nFiles in {OUT.relative_to(ROOT)}: " + ", ".join(sorted(p.name for p in OUT.iterdir()))
    )
    print(f"\n{'check':<{width}}  result")
    for check, result, ok in rows:
        print(f"{check:<{width}}  {result}{'' if ok else '   <-- FAILED'}")
    return 0 if all(ok for _, _, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
