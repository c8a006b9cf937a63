"""The `mtls-operator` (and `kubectl-mtls`) command line.

Every failure the user can cause ends as one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mtls_operator import __version__
from mtls_operator.cli import cluster as cluster_cli
from mtls_operator.cli import completion, convert, offline, policy_check, revoke
from mtls_operator.cli import run as operator_command
from mtls_operator.cli import settings as operator_settings
from mtls_operator.cli.errors import CommandError
from mtls_operator.cli.output import add_output_argument
from mtls_operator.cli.parsers import EXIT_USAGE, PROGRAM, add_command, add_command_group, examples
from mtls_operator.cli.recipe import RecipeError
from mtls_operator.pki import PKIError
from mtls_operator.runtime.api_errors import ApiError


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
        epilog=examples(
            f"{PROGRAM} ca init --out ./ca && {PROGRAM} issue server --ca-dir ./ca "
            "--common-name api --dns api.shop.svc",
            "kubectl mtls status -A --context prod",
            f"{PROGRAM} completion bash > /etc/bash_completion.d/{PROGRAM}",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")
    offline.add_commands(commands)
    _add_cluster_commands(commands)
    convert.add_convert_command(commands)
    completion.add_completion_command(commands, parser)
    return parser


def _add_cluster_commands(commands: Any) -> None:
    """The operator itself, and the commands that look at what it did."""
    run = add_command(
        commands,
        "run",
        "run the operator",
        examples(
            f"{PROGRAM} run --bootstrap-ca --no-leader-election",
            f"{PROGRAM} run --namespace shop --cluster-ca-secret shop/shop-ca",
        ),
    )
    operator_settings.add_arguments(run)
    run.set_defaults(command=operator_command.run_operator)

    offline.add_inspect(commands)

    status = add_command(
        commands,
        "status",
        "a table of MtlsCertificates: readiness, expiry, reason",
        examples(
            "kubectl mtls status",
            "kubectl mtls status -A -o wide",
            f"{PROGRAM} status -n shop --context prod -o yaml",
        ),
    )
    cluster_cli.add_cluster_arguments(status, all_allowed=True)
    add_output_argument(status, cluster_cli.STATUS_FORMATS)
    status.set_defaults(command=cluster_cli.status)

    renew = add_command(
        commands,
        "renew",
        "ask the operator to re-issue a certificate now",
        examples("kubectl mtls renew web -n shop", "kubectl mtls renew --all -A"),
    )
    renew.add_argument("name", nargs="?", metavar="NAME", help="the MtlsCertificate")
    renew.add_argument("--all", action="store_true", help="every certificate in the namespace(s)")
    cluster_cli.add_cluster_arguments(renew, all_allowed=True)
    renew.set_defaults(command=cluster_cli.renew)
    revoke.add_revoke_command(commands)

    _add_policy_commands(commands)


def _add_policy_commands(commands: Any) -> None:
    policy_commands = add_command_group(
        commands,
        "policy",
        "the identity policy, offline",
        examples(f"{PROGRAM} policy check -f cert.yaml --policy-file policies/"),
    )
    policy_check_command = add_command(
        policy_commands,
        "check",
        "whether MtlsCertificates would be allowed, and by which rule",
        examples(
            f"{PROGRAM} policy check -f cert.yaml --policy-file policies/ "
            "--namespace-label team=shop",
            f"kustomize build apps/shop | {PROGRAM} policy check -f - --policy-file policies/",
        ),
        description="Judge MtlsCertificate YAML against MtlsPolicy YAML as the operator "
        "would (no cluster needed), for pre-merge checks. Exits 1 when one is refused.",
    )
    policy_check.add_arguments(policy_check_command)
    policy_check_command.set_defaults(command=policy_check.check)


if __name__ == "__main__":
    sys.exit(main())
