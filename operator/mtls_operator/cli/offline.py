"""The offline commands: `ca init`, `issue` and `inspect FILE`, the openssl
recipe without a cluster."""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mtls_operator.api.spec import MAX_COMMON_NAME
from mtls_operator.cli import ca_rotate
from mtls_operator.cli import cluster as cluster_cli
from mtls_operator.cli.errors import CommandError
from mtls_operator.cli.output import MACHINE_FORMATS, dump
from mtls_operator.cli.parsers import PROGRAM, add_command, add_command_group, examples
from mtls_operator.cli.recipe import init_ca, issue_to_files, load_ca_dir, read_passphrase
from mtls_operator.cli.report import EXIT_CHAIN_INVALID, render_chain_report
from mtls_operator.pki import (
    DistinguishedName,
    KeyAlgorithm,
    KeySpec,
    LeafRequest,
    SubjectAltNames,
    Usage,
    inspect_chain,
    load_certificates,
    names,
)

_T = TypeVar("_T")

# A value given to the wrong flag, and the flag it was meant for.
_MEANT_FOR = (
    ("--uri", re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")),
    ("--email", re.compile(r"^[^@\s]+@[^@\s]+\Z")),
    ("--ip", re.compile(r"^[0-9.]+\Z|:")),
)


def add_commands(commands: Any) -> None:
    _add_ca(commands)
    _add_issue(commands)


def _add_ca(commands: Any) -> None:
    ca_commands = add_command_group(
        commands,
        "ca",
        "manage an offline CA directory",
        examples(f"{PROGRAM} ca init --out ./ca --common-name 'Shop CA'"),
    )
    ca_init = add_command(
        ca_commands,
        "init",
        "create a self-signed CA: ca-key.pem (mode 0600) and ca-crt.pem",
        examples(
            f"{PROGRAM} ca init --out ./ca --common-name 'Shop CA'",
            f"{PROGRAM} ca init --out ./ca --key-algorithm RSA --key-size 4096 --days 1825",
            f"{PROGRAM} ca init --out ./ca --passphrase-file ./ca-passphrase",
        ),
    )
    ca_init.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory to write the CA into"
    )
    ca_init.add_argument(
        "--common-name",
        default="mtls-operator CA",
        metavar="CN",
        help="the CA's subject common name (default: mtls-operator CA)",
    )
    _add_validity_and_key_arguments(ca_init, days=3650)
    ca_init.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="encrypt ca-key.pem with the first line of this file",
    )
    ca_init.add_argument("--force", action="store_true", help="replace an existing CA")
    ca_init.set_defaults(command=_ca_init)
    ca_rotate.add_rotate(ca_commands)


def _add_issue(commands: Any) -> None:
    issue = add_command(
        commands,
        "issue",
        "issue a server, client or both certificate from a CA directory",
        examples(
            f"{PROGRAM} issue server --ca-dir ./ca --common-name api --dns api.shop.svc",
            f"{PROGRAM} issue client --ca-dir ./ca --common-name worker "
            "--uri spiffe://cluster.local/ns/shop/sa/worker",
            f"{PROGRAM} issue both --ca-dir ./ca --ip 10.0.0.7 --out ./db",
        ),
    )
    issue.add_argument(
        "usage",
        choices=[u.value for u in Usage],
        help="server (serverAuth), client (clientAuth) or both",
    )
    issue.add_argument(
        "--ca-dir", type=Path, required=True, metavar="DIR", help="the CA directory (ca init)"
    )
    issue.add_argument(
        "--common-name",
        default="",
        metavar="CN",
        help="the subject common name; a server's host name or address is also put in the SAN",
    )
    issue.add_argument(
        "--dns", action="append", default=[], metavar="NAME", help="a DNS name; repeatable"
    )
    issue.add_argument(
        "--ip", action="append", default=[], metavar="ADDRESS", help="an IP address; repeatable"
    )
    issue.add_argument(
        "--uri", action="append", default=[], metavar="URI", help="a URI (SPIFFE ID); repeatable"
    )
    issue.add_argument(
        "--email",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an e-mail address; repeatable",
    )
    _add_validity_and_key_arguments(issue, days=365)
    issue.add_argument(
        "--passphrase-file", type=Path, metavar="FILE", help="passphrase of an encrypted CA key"
    )
    issue.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write the files (default: the CA dir)"
    )
    issue.add_argument(
        "--force", action="store_true", help="replace existing <usage>-key.pem and -crt.pem"
    )
    issue.set_defaults(command=_issue)


def add_inspect(commands: Any) -> None:
    inspect = add_command(
        commands,
        "inspect",
        "describe a certificate file (or - for stdin), or `secret NAME`, and check its chain",
        examples(
            f"{PROGRAM} inspect server-crt.pem --ca-file ca-crt.pem",
            f"kubectl get secret web-tls -o jsonpath='{{.data.tls\\.crt}}' | base64 -d | "
            f"{PROGRAM} inspect -",
            f"{PROGRAM} inspect secret web-tls -n shop -o yaml",
        ),
        usage=(
            "%(prog)s FILE|- [--ca-file FILE] [-o json|yaml]\n"
            "       %(prog)s secret NAME [-n NS] [--context NAME] [-o json|yaml]"
        ),
    )
    inspect.add_argument(
        "target",
        nargs="+",
        metavar="FILE|-|secret NAME",
        help="a PEM or DER file, - for stdin, or `secret` and a Secret's name",
    )
    inspect.add_argument(
        "--ca-file", type=Path, metavar="FILE", help="trust bundle to check against"
    )
    cluster_cli.add_cluster_arguments(inspect, all_allowed=False)
    inspect.add_argument(
        "-o",
        "--output",
        choices=MACHINE_FORMATS,
        help="json or yaml instead of the report",
    )
    inspect.add_argument(
        "--json", action="store_const", const="json", dest="output", help=argparse.SUPPRESS
    )
    inspect.set_defaults(command=_inspect)


def _add_validity_and_key_arguments(parser: argparse.ArgumentParser, days: int) -> None:
    """What a new certificate is given, the CA's as a leaf's: a lifetime and a key."""
    parser.add_argument(
        "--days", type=_positive_int, default=days, help=f"validity in days (default: {days})"
    )
    algorithms = [a.value for a in KeyAlgorithm]
    parser.add_argument(
        "--key-algorithm",
        type=_key_algorithm,
        default=KeyAlgorithm.ECDSA,
        metavar="|".join(algorithms),
        help="key algorithm (default: ECDSA)",
    )
    parser.add_argument(
        "--key-size",
        type=int,
        metavar="BITS",
        help="RSA 2048, 3072 or 4096; ECDSA 256, 384 or 521; none for Ed25519",
    )


def _key_algorithm(text: str) -> KeyAlgorithm:
    try:
        return KeyAlgorithm.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than zero")
    return value


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_spec(args: argparse.Namespace) -> KeySpec:
    try:
        return KeySpec.of(args.key_algorithm, args.key_size)
    except ValueError as err:
        raise CommandError(f"--key-size {args.key_size}: {err}") from None


def _passphrase(args: argparse.Namespace) -> bytes | None:
    path: Path | None = args.passphrase_file
    return read_passphrase(path) if path else None


def _ca_init(args: argparse.Namespace) -> int:
    _check_common_name(args.common_name)
    files = init_ca(
        args.out,
        common_name=args.common_name,
        lifetime=datetime.timedelta(days=args.days),
        key_spec=_key_spec(args),
        now=_now(),
        passphrase=_passphrase(args),
        overwrite=args.force,
    )
    print(f"wrote {files.key} (private, mode 0600) and {files.certificate}")
    return 0


def _issue(args: argparse.Namespace) -> int:
    # As in an MtlsCertificate, the Common Name is one identity among others: required
    # only when no other is given, so that a certificate asked for an address alone does
    # not also carry a host name nobody asked for.
    if args.common_name or not (args.dns or args.ip or args.uri or args.email):
        _check_common_name(args.common_name, ": give it, or one of --dns, --ip, --uri, --email")
        _parsed("--common-name", names.parse_subject_identity, args.common_name)
    request = LeafRequest(
        usage=Usage(args.usage),
        subject=DistinguishedName(common_name=args.common_name or None),
        alt_names=SubjectAltNames(
            dns_names=tuple(_parsed("--dns", names.parse_dns_name, v) for v in args.dns),
            ip_addresses=tuple(_parsed("--ip", names.parse_ip_address, v) for v in args.ip),
            uris=tuple(_parsed("--uri", names.parse_uri, v) for v in args.uri),
            email_addresses=tuple(
                _parsed("--email", names.parse_email_address, v) for v in args.email
            ),
        ),
        lifetime=datetime.timedelta(days=args.days),
    )
    key_spec = _key_spec(args)
    now = _now()
    ca = load_ca_dir(args.ca_dir, now, _passphrase(args))
    files, issued = issue_to_files(
        ca, request, key_spec, args.out or args.ca_dir, now, overwrite=args.force
    )
    if issued.clamped_to_ca:
        print(
            f"{PROGRAM}: warning: validity cut to the CA's expiry "
            f"({ca.not_after.isoformat()}), shorter than the {args.days} days asked for",
            file=sys.stderr,
        )
    identities = [str(n.value) for n in request.effective_alt_names().general_names()]
    print(
        f"wrote {files.key} (private, mode 0600) and {files.certificate}: "
        f"{args.usage} certificate for {', '.join(identities) or args.common_name}, "
        f"valid until {issued.certificate.not_valid_after_utc.isoformat()}"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    if args.target[0] == "secret" and len(args.target) == 2:
        args.name = args.target[1]
        return cluster_cli.inspect_secret(args)
    if len(args.target) != 1:
        raise CommandError("inspect takes one FILE (or -), or `secret NAME`")
    source = args.target[0]
    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    chain = load_certificates(data)
    anchors = load_certificates(args.ca_file.read_bytes()) if args.ca_file else None
    report = inspect_chain(chain, anchors, _now())
    if args.output in MACHINE_FORMATS:
        print(dump(report.to_json(), args.output))
    else:
        print(render_chain_report(report))
    return EXIT_CHAIN_INVALID if report.chain_valid is False else 0


def _parsed(flag: str, parse: Callable[[str], _T], value: str) -> _T:
    try:
        return parse(value)
    except ValueError as err:
        hint = next(
            (
                f" (use {other} for this)"
                for other, looks in _MEANT_FOR
                if other != flag and looks.search(value)
            ),
            "",
        )
        raise CommandError(f"{flag} {value!r}: {err}{hint}") from None


def _check_common_name(common_name: str, or_else: str = "") -> None:
    if not common_name:
        raise CommandError(f"--common-name must not be empty{or_else}")
    if len(common_name) > MAX_COMMON_NAME:
        raise CommandError(
            f"--common-name {common_name[:20]!r}...: "
            f"at most {MAX_COMMON_NAME} characters (RFC 5280)"
        )
