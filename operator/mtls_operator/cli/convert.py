"""`mtls-operator convert`: cert-manager Certificate, Issuer and
ClusterIssuer YAML in, MtlsCertificate YAML out (with what to know as
comments). Refusals and skipped objects go to stderr, one line each, so
that stdout stays something to apply.

Objects that are not cert-manager's (a Namespace, a Secret) are skipped
with a note on stderr and do not change the exit status: manifests mix
them in, and they apply as they are. Other cert-manager kinds, and
cert-manager objects that cannot be converted, are refused."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from mtls_operator.cli.parsers import add_command, add_files_argument, examples
from mtls_operator.convert import Conversion, convert_documents

PROGRAM = "mtls-operator convert"
EXIT_CONVERTED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
STDIN = "-"
EXAMPLES = (
    "mtls-operator convert -f certificate.yaml > mtls-certificate.yaml",
    "mtls-operator convert -f issuers.yaml -f certificates.yaml   # ca issuers give caSecretName",
    "kubectl get certificates.cert-manager.io,issuers.cert-manager.io -n shop -o yaml "
    "| mtls-operator convert -f -",
)
_COMMENT_WIDTH = 88


class InputError(Exception):
    """A file that cannot be read as YAML; one line for the user."""


def add_convert_command(commands: Any) -> None:
    """Register `convert` on the subcommands of the `mtls-operator` parser."""
    parser = add_command(
        commands,
        "convert",
        "convert cert-manager Certificates (and ca/selfSigned issuers) to MtlsCertificates",
        examples(*EXAMPLES),
        description="Read cert-manager.io/v1 Certificate, Issuer and ClusterIssuer YAML and "
        "write MtlsCertificate YAML to stdout. What cannot be converted is refused on stderr, "
        "one line naming the field; exit status 1 then (the rest is still written), 2 for "
        "unreadable input.",
    )
    add_arguments(parser)
    parser.set_defaults(command=convert)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_files_argument(
        parser,
        "cert-manager YAML: several documents and kind: List allowed; - for stdin; "
        "repeatable (give the Issuers with the Certificates that use them)",
    )


def convert(args: argparse.Namespace) -> int:
    try:
        documents = list(_documents(args.filename))
    except InputError as err:
        print(f"{PROGRAM}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    conversion = convert_documents(documents)
    write_conversion(conversion, sys.stdout)
    for skipped in conversion.skipped:
        print(f"{PROGRAM}: skipped: {skipped.source}: {skipped.reason}", file=sys.stderr)
    for refusal in conversion.refusals:
        print(f"{PROGRAM}: refused: {refusal.line()}", file=sys.stderr)
    return EXIT_REFUSED if conversion.refusals else EXIT_CONVERTED


def write_conversion(conversion: Conversion, out: TextIO) -> None:
    """Issuers' notes first, as a header; then each MtlsCertificate with its notes."""
    header = [c for c in conversion.converted if c.document is None]
    documents = [c for c in conversion.converted if c.document is not None]
    for converted in header:
        out.write(_comment(list(converted.notes)))
    for index, converted in enumerate(documents):
        if index or header:
            out.write("---\n")
        out.write(_comment([f"converted from cert-manager {converted.source}", *converted.notes]))
        out.write(yaml.safe_dump(converted.document, sort_keys=False, allow_unicode=True))


def _comment(notes: list[str]) -> str:
    lines = []
    for note in notes:
        wrapped = textwrap.wrap(
            note, _COMMENT_WIDTH - 4, break_long_words=False, break_on_hyphens=False
        )
        lines += [f"# {'- ' if i == 0 else '  '}{text}" for i, text in enumerate(wrapped)]
    return "".join(f"{line}\n" for line in lines)


def _documents(files: list[str]) -> Iterator[object]:
    for file in files:
        try:
            text = sys.stdin.read() if file == STDIN else Path(file).read_text()
        except OSError as err:
            raise InputError(f"{file}: {err.strerror or err}") from None
        except UnicodeDecodeError:
            raise InputError(f"{file}: not text (UTF-8 YAML expected)") from None
        try:
            yield from list(yaml.safe_load_all(text))
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise InputError(f"{file}: not YAML{at}: {problem}") from None
