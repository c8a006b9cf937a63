"""How every command's parser is made: a help line, a description, examples
kept as written, and a usage error (not the top-level usage) when a command
that has subcommands is given none."""

from __future__ import annotations

import argparse
import sys
from typing import Any

PROGRAM = "mtls-operator"
EXIT_USAGE = 2


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_files_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """-f/--filename, as kubectl names it: repeatable, - for standard input."""
    parser.add_argument(
        "-f", "--filename", action="append", required=True, metavar="FILE", help=what
    )


def add_command(
    commands: Any, name: str, summary: str, epilog: str, **options: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=options.pop("description", summary[0].upper() + summary[1:] + "."),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **options,
    )
    parser.set_defaults(command=_choose_a_command(parser))
    return parser


def add_command_group(commands: Any, name: str, summary: str, epilog: str) -> Any:
    """A command that only has subcommands: where to add them."""
    group = add_command(commands, name, summary, epilog)
    return group.add_subparsers(metavar="COMMAND")


def _choose_a_command(parser: argparse.ArgumentParser) -> Any:
    """What runs when `parser`'s command is given without its subcommand."""

    def usage_error(_: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: choose a command (see --help)", file=sys.stderr)
        return EXIT_USAGE

    return usage_error
