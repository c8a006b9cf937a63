"""The CLI as a new user meets it: help and examples everywhere, choices
listed, nothing overwritten or ignored in silence, one JSON key style, and
completion scripts that the real bash, zsh and fish complete with."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mtls_operator import __version__
from mtls_operator.cli.main import build_parser, main

from support.paths import REPO_ROOT

COMMAND = str(Path(sys.executable).parent / "mtls-operator")
CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors, --help and --version
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def parsers(
    parser: argparse.ArgumentParser, path: str = "mtls-operator"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


ALL = list(parsers(build_parser()))


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[path for path, _ in ALL])
def test_every_command_has_examples_and_every_flag_a_help_text(
    path: str, parser: argparse.ArgumentParser
) -> None:
    assert parser.epilog, path
    assert parser.epilog.startswith("examples:\n"), path
    assert parser.description, path
    undocumented = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction) and not a.help
    ]
    assert undocumented == [], f"{path}: {undocumented}"


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[path for path, _ in ALL])
def test_every_example_parses(path: str, parser: argparse.ArgumentParser) -> None:
    """The examples are commands that parse, not prose that drifted."""
    assert parser.epilog is not None
    for line in parser.epilog.splitlines()[1:]:
        for command in re.split(r" \| | && ", line.strip()):
            # Without redirections and process substitution: the words themselves.
            bare = re.sub(r"\s+>\s*\S+", "", command).replace("<(", "").replace(")", "")
            argv = our_arguments(shlex.split(bare, comments=True))
            if argv is not None:
                build_parser().parse_args(argv)


def our_arguments(words: list[str]) -> list[str] | None:
    """The arguments of an `mtls-operator` or `kubectl mtls` command; None
    for another tool's command in a pipeline."""
    if words[0] in ("mtls-operator", "source"):
        return words[1:] if words[0] == "mtls-operator" else our_arguments(words[1:])
    if words[:2] == ["kubectl", "mtls"]:
        return words[2:]
    return None


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"mtls-operator {__version__}\n", "")


def test_a_command_without_its_subcommand_shows_its_own_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = run(capsys, "ca")
    assert status == 2
    assert err.startswith("usage: mtls-operator ca [-h] COMMAND")
    assert err.endswith("mtls-operator ca: error: choose a command (see --help)\n")


def test_an_unknown_key_algorithm_lists_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "ca", "init", "--out", str(tmp_path), "--key-algorithm", "DSA")
    assert status == 2
    assert err.splitlines()[-1] == (
        "mtls-operator ca init: error: argument --key-algorithm: "
        "unknown key algorithm 'DSA' (choose one of ECDSA, RSA, Ed25519)"
    )


@pytest.fixture
def ca_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "ca"
    assert run(capsys, "ca", "init", "--out", str(directory))[0] == 0
    return directory


def issue(capsys: pytest.CaptureFixture[str], ca_dir: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "issue", "server", "--ca-dir", str(ca_dir), "--common-name", "a", *extra)


def test_issue_refuses_to_overwrite_a_key_pair_without_force(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert issue(capsys, ca_dir)[0] == 0
    key = (ca_dir / "server-key.pem").read_bytes()
    status, _, err = issue(capsys, ca_dir)
    assert status == 1
    assert err == (
        f"mtls-operator: error: {ca_dir / 'server-key.pem'} already exists; "
        "refusing to replace a key pair (use --force)\n"
    )
    assert (ca_dir / "server-key.pem").read_bytes() == key
    assert issue(capsys, ca_dir, "--force")[0] == 0
    assert (ca_dir / "server-key.pem").read_bytes() != key


def test_a_passphrase_for_an_unencrypted_ca_is_an_error(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("secret\n")
    status, _, err = issue(capsys, ca_dir, "--passphrase-file", str(passphrase))
    assert status == 1
    assert err == (
        f"mtls-operator: error: --passphrase-file given, but {ca_dir / 'ca-key.pem'} "
        "is not encrypted\n"
    )


def test_an_encrypted_ca_without_passphrase_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("secret\n")
    ca = tmp_path / "encrypted"
    run(capsys, "ca", "init", "--out", str(ca), "--passphrase-file", str(passphrase))
    status, _, err = issue(capsys, ca)
    assert status == 1
    assert err == (
        f"mtls-operator: error: {ca / 'ca-key.pem'} is encrypted: "
        "give its passphrase with --passphrase-file\n"
    )
    assert issue(capsys, ca, "--passphrase-file", str(passphrase))[0] == 0


def test_a_missing_ca_directory_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = issue(capsys, tmp_path / "nope")
    assert status == 1
    assert err == f"mtls-operator: error: --ca-dir {tmp_path / 'nope'}: no such directory\n"


@pytest.mark.parametrize(
    ("flag", "value", "meant"),
    [
        ("--dns", "http://x.example", "--uri"),
        ("--dns", "a@x.example", "--email"),
        ("--dns", "fe80::1", "--ip"),
        ("--ip", "spiffe://cluster.local/ns/a/sa/b", "--uri"),
    ],
)
def test_a_value_for_another_flag_says_which(
    ca_dir: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, meant: str
) -> None:
    status, _, err = issue(capsys, ca_dir, flag, value)
    assert status == 1
    assert err.startswith(f"mtls-operator: error: {flag} {value!r}: ")
    assert err.endswith(f" (use {meant} for this)\n")
    assert err.count("\n") == 1


def test_inspect_speaks_camel_case_in_json_and_yaml(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issue(capsys, ca_dir, "--dns", "a.example", "--ip", "10.0.0.1")
    certificate = str(ca_dir / "server-crt.pem")
    ca = str(ca_dir / "ca-crt.pem")
    _, as_json, _ = run(capsys, "inspect", certificate, "--ca-file", ca, "-o", "json")
    _, as_yaml, _ = run(capsys, "inspect", certificate, "--ca-file", ca, "-o", "yaml")
    _, legacy, _ = run(capsys, "inspect", certificate, "--ca-file", ca, "--json")
    data = json.loads(as_json)
    assert yaml.safe_load(as_yaml) == data == json.loads(legacy)
    assert data["certificates"][0]["ipAddresses"] == ["10.0.0.1"]
    assert data["chain"]["checkedAgainst"] == "the given CA bundle"
    assert sorted(keys(data)) == sorted(k for k in keys(data) if CAMEL_CASE.match(k))


def keys(data: object) -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield key
            yield from keys(value)
    elif isinstance(data, list):
        for item in data:
            yield from keys(item)


def test_the_demo_prints_commands_that_can_be_pasted(tmp_path: Path) -> None:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import demo_offline, sys; demo_offline.step(*sys.argv[1:])",
            "ca",
            "init",
            "--out",
            str(tmp_path / "pasted ca"),
            "--common-name",
            "Demo CA",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT / "hack",
    )
    line = shown.stdout.splitlines()[0]
    assert (
        line == f"$ mtls-operator ca init --out '{tmp_path / 'pasted ca'}' --common-name 'Demo CA'"
    )


# --- completion, run in the real shells ---

BASH_LINES = {
    "mtls-operator st": "status",
    "mtls-operator status -o ": "table wide json yaml",
    "mtls-operator status --con": "--context",
    "kubectl-mtls ca ": "init rotate",
    "mtls-operator issue s": "server",
    "mtls-operator completion ": "bash zsh fish",
    "mtls-operator policy check --namespace-l": "--namespace-label",
}


def script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    status, out, _ = run(capsys, "completion", shell)
    assert status == 0
    return out


def shell(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is installed by hack/ensure-tools.sh"
    return path


def test_bash_completes_commands_flags_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completion = tmp_path / "completion.bash"
    completion.write_text(script("bash", capsys))
    for line, expected in BASH_LINES.items():
        program = (
            f"source {completion}\n"
            f'read -ra COMP_WORDS <<< "$LINE"\n'
            '[[ $LINE == *" " ]] && COMP_WORDS+=("")\n'
            "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
            '_mtls_complete; echo "${COMPREPLY[*]}"\n'
        )
        done = subprocess.run(
            [shell("bash"), "-c", program],
            env={"LINE": line},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == expected, line


def test_zsh_completes_commands_flags_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completion = tmp_path / "_mtls-operator"
    completion.write_text(script("zsh", capsys))
    for line, expected in BASH_LINES.items():
        # compadd filters by the prefix itself: this one prints what it is offered.
        program = (
            f"source {completion}\n"
            'compadd() { shift; print -r -- "$*" }\n'
            "words=(${(z)LINE}); [[ $LINE == *' ' ]] && words+=('')\n"
            "CURRENT=${#words}; PREFIX=${words[CURRENT]}\n"
            "_mtls\n"
        )
        done = subprocess.run(
            [shell("zsh"), "-f", "-c", program],
            env={"LINE": line},
            capture_output=True,
            text=True,
            check=True,
        )
        word = line.split(" ")[-1]
        offered = [w for w in done.stdout.split() if w.startswith(word)]
        assert offered == expected.split(), line


def test_fish_completes_commands_flags_and_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completion = tmp_path / "mtls-operator.fish"
    completion.write_text(script("fish", capsys))
    for line, expected in BASH_LINES.items():
        done = subprocess.run(
            [shell("fish"), "--no-config", "-c", f"source {completion}; complete -C $LINE"],
            env={"LINE": line, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
        )
        offered = [row.split("\t")[0] for row in done.stdout.splitlines()]
        assert sorted(offered) == sorted(expected.split()), line
