"""The `mtls-operator` (and `kubectl-mtls`) command line.

Every failure the user can cause ends as one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mtls_operator.api.spec import MAX_COMMON_NAME
from mtls_operator.cli import cluster as cluster_cli
from mtls_operator.cli import policy_check
from mtls_operator.cli import run as operator_command
from mtls_operator.cli.recipe import (
    RecipeError,
    init_ca,
    issue_to_files,
    load_ca_dir,
    read_passphrase,
)
from mtls_operator.cli.report import EXIT_CHAIN_INVALID, render_chain_report
from mtls_operator.pki import (
    DistinguishedName,
    KeyAlgorithm,
    KeySpec,
    LeafRequest,
    PKIError,
    SubjectAltNames,
    Usage,
    inspect_chain,
    load_certificates,
    names,
)
from mtls_operator.runtime.kube import ApiError

PROGRAM = "mtls-operator"
EXIT_USAGE = 2
_T = TypeVar("_T")


class CommandError(Exception):
    """A one-line message for the user."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] | None = getattr(args, "command", None)
    if command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROGRAM}: error: choose a command (see --help)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return command(args)
    except (
        CommandError,
        cluster_cli.ClusterCommandError,
        policy_check.PolicyCheckError,
        RecipeError,
        PKIError,
        ApiError,
        ValueError,
    ) as err:
        print(f"{PROGRAM}: error: {err}", file=sys.stderr)
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        print(f"{PROGRAM}: error: {err.strerror or err}{where}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Issue and renew mTLS certificates, in a cluster or offline.",
    )
    commands = parser.add_subparsers(metavar="COMMAND")
    _add_recipe_commands(commands)
    _add_cluster_commands(commands)
    return parser


def _add_recipe_commands(commands: Any) -> None:
    """The offline recipe: `ca init` and `issue`."""
    ca = commands.add_parser("ca", help="manage an offline CA directory")
    ca_commands = ca.add_subparsers(metavar="COMMAND")
    ca_init = ca_commands.add_parser(
        "init", help="create a self-signed CA: ca-key.pem and ca-crt.pem"
    )
    ca_init.add_argument("--out", type=Path, required=True, metavar="DIR")
    ca_init.add_argument("--common-name", default="mtls-operator CA", metavar="CN")
    ca_init.add_argument("--days", type=_positive_int, default=3650)
    _add_key_arguments(ca_init)
    ca_init.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="encrypt ca-key.pem with this passphrase",
    )
    ca_init.add_argument("--force", action="store_true", help="replace an existing CA")
    ca_init.set_defaults(command=_ca_init)

    issue = commands.add_parser("issue", help="issue a server, client or both certificate")
    issue.add_argument("usage", choices=[u.value for u in Usage])
    issue.add_argument("--ca-dir", type=Path, required=True, metavar="DIR")
    issue.add_argument("--common-name", required=True, metavar="CN")
    issue.add_argument("--dns", action="append", default=[], metavar="NAME")
    issue.add_argument("--ip", action="append", default=[], metavar="ADDRESS")
    issue.add_argument("--uri", action="append", default=[], metavar="URI")
    issue.add_argument("--email", action="append", default=[], metavar="ADDRESS")
    issue.add_argument("--days", type=_positive_int, default=365)
    _add_key_arguments(issue)
    issue.add_argument(
        "--passphrase-file", type=Path, metavar="FILE", help="passphrase of an encrypted CA key"
    )
    issue.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write the files (default: the CA dir)"
    )
    issue.set_defaults(command=_issue)


def _add_cluster_commands(commands: Any) -> None:
    """The operator itself, and the commands that look at what it did."""
    run = commands.add_parser("run", help="run the operator")
    operator_command.add_arguments(run)
    run.set_defaults(command=operator_command.run_operator)

    inspect = commands.add_parser(
        "inspect",
        help="describe a certificate file (or - for stdin), or `secret NAME`, and check its chain",
        usage=(
            "%(prog)s FILE|- [--ca-file FILE] [--json]\n"
            "       %(prog)s secret NAME [-n NS] [--json]"
        ),
    )
    inspect.add_argument("target", nargs="+", metavar="FILE|-|secret NAME")
    inspect.add_argument(
        "--ca-file", type=Path, metavar="FILE", help="trust bundle to check against"
    )
    inspect.add_argument("-n", "--namespace", metavar="NS", help="namespace of the Secret")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(command=_inspect)

    status = commands.add_parser(
        "status", help="a table of MtlsCertificates: readiness, expiry, reason"
    )
    cluster_cli.add_namespace_arguments(status, all_allowed=True)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(command=cluster_cli.status)

    renew = commands.add_parser("renew", help="ask the operator to re-issue a certificate now")
    renew.add_argument("name", nargs="?", metavar="NAME")
    renew.add_argument("--all", action="store_true", help="every certificate in the namespace(s)")
    cluster_cli.add_namespace_arguments(renew, all_allowed=True)
    renew.set_defaults(command=cluster_cli.renew)

    policy = commands.add_parser("policy", help="the identity policy, offline")
    policy_commands = policy.add_subparsers(metavar="COMMAND")
    policy_check_command = policy_commands.add_parser(
        "check",
        help="whether MtlsCertificates would be allowed, and by which rule",
        description="Judge MtlsCertificate YAML against MtlsPolicy YAML as the operator "
        "would (no cluster needed), for pre-merge checks. Exits 1 when one is refused.",
    )
    policy_check.add_arguments(policy_check_command)
    policy_check_command.set_defaults(command=policy_check.check)


def _add_key_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-algorithm",
        type=KeyAlgorithm.parse,
        default=KeyAlgorithm.ECDSA,
        metavar="ECDSA|RSA|Ed25519",
    )
    parser.add_argument("--key-size", type=int, metavar="BITS")


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
    _check_common_name(args.common_name)
    request = LeafRequest(
        usage=Usage(args.usage),
        subject=DistinguishedName(common_name=args.common_name),
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
    files, issued = issue_to_files(ca, request, key_spec, args.out or args.ca_dir, now)
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
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render_chain_report(report))
    return EXIT_CHAIN_INVALID if report.chain_valid is False else 0


def _parsed(flag: str, parse: Callable[[str], _T], value: str) -> _T:
    try:
        return parse(value)
    except ValueError as err:
        raise CommandError(f"{flag} {value!r}: {err}") from None


def _check_common_name(common_name: str) -> None:
    if not common_name:
        raise CommandError("--common-name must not be empty")
    if len(common_name) > MAX_COMMON_NAME:
        raise CommandError(
            f"--common-name {common_name[:20]!r}...: "
            f"at most {MAX_COMMON_NAME} characters (RFC 5280)"
        )


if __name__ == "__main__":
    sys.exit(main())
