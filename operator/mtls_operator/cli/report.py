"""Human-readable text for inspection reports."""

from __future__ import annotations

from mtls_operator.pki import CertificateReport, ChainReport

# The exit status of `inspect` when the chain does not verify.
EXIT_CHAIN_INVALID = 3


def render_certificate(report: CertificateReport) -> str:
    usages = ", ".join((*report.key_usages, *report.extended_key_usages)) or "none"
    lines = [
        f"  Subject:        {report.subject or '(empty)'}",
        f"  Issuer:         {report.issuer}",
        f"  Serial:         {report.serial_number}",
        f"  Key:            {report.key}",
        f"  CA:             {'yes' if report.is_ca else 'no'}",
        f"  Usages:         {usages}",
    ]
    for label, values in (
        ("DNS names", report.dns_names),
        ("IP addresses", report.ip_addresses),
        ("URIs", report.uris),
        ("E-mail", report.email_addresses),
    ):
        if values:
            lines.append(f"  {label + ':':<15} {', '.join(values)}")
    left = f"{report.days_left:.1f} days left" if report.days_left >= 0 else "EXPIRED"
    lines += [
        f"  Not before:     {report.not_before.isoformat()}",
        f"  Not after:      {report.not_after.isoformat()} ({left})",
        f"  SHA-256:        {report.fingerprint_sha256}",
    ]
    return "\n".join(lines)


def render_chain_report(report: ChainReport) -> str:
    total = len(report.certificates)
    blocks = [
        f"Certificate {index} of {total}\n{render_certificate(certificate)}"
        for index, certificate in enumerate(report.certificates, start=1)
    ]
    if report.checked_against is None:
        verdict = "Chain: not checked (give --ca-file with the trust bundle)"
    elif report.chain_problem is None:
        verdict = f"Chain: OK (checked against {report.checked_against})"
    else:
        verdict = (
            f"Chain: INVALID: {report.chain_problem} (checked against {report.checked_against})"
        )
    return "\n".join([*blocks, verdict])
