"""`completion bash|zsh|fish`: shell completion scripts written from the
parser itself, so that every command, flag and choice completes and none
can be forgotten. The scripts are static: a TAB never starts Python."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.cli.parsers import PROGRAM, add_command, examples

# The names the scripts complete: the program, and the kubectl plugin.
COMMANDS = (PROGRAM, "kubectl-mtls")
SHELLS = ("bash", "zsh", "fish")


@dataclass
class Node:
    """One command: its subcommands, flags, the choices of flags that take
    one, and the choices of its positional arguments."""

    path: str
    summary: str = ""
    commands: dict[str, Node] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    flag_choices: dict[str, list[str]] = field(default_factory=dict)
    positional_choices: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.commands.values():
            yield from child.walk()


def add_completion_command(commands: Any, parser: argparse.ArgumentParser) -> None:
    completion = add_command(
        commands,
        "completion",
        "print a shell completion script: bash, zsh or fish",
        examples(
            f"source <({PROGRAM} completion bash)",
            f'{PROGRAM} completion zsh > "${{fpath[1]}}/_{PROGRAM}"',
            f"{PROGRAM} completion fish > ~/.config/fish/completions/{PROGRAM}.fish",
        ),
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")

    def print_script(args: argparse.Namespace) -> int:
        print(script(args.shell, tree(parser)))
        return 0

    completion.set_defaults(command=print_script)


def tree(parser: argparse.ArgumentParser, path: str = "", summary: str = "") -> Node:
    node = Node(path, summary)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                node.commands[name] = tree(child, f"{path}/{name}", summaries.get(name, ""))
        elif action.help == argparse.SUPPRESS:
            continue
        elif action.option_strings:
            node.flags += action.option_strings
            if action.choices:
                for flag in action.option_strings:
                    node.flag_choices[flag] = [str(c) for c in action.choices]
        elif action.choices:
            node.positional_choices += [str(c) for c in action.choices]
    return node


def script(shell: str, root: Node) -> str:
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](root)


def _words(values: list[str]) -> str:
    return shlex.quote(" ".join(values))


def _bash(root: Node) -> str:
    def table(name: str, rows: dict[str, list[str]]) -> str:
        entries = " ".join(f"[{shlex.quote(key)}]={_words(v)}" for key, v in rows.items())
        return f"declare -gA _mtls_{name}=({entries})"

    nodes = list(root.walk())
    commands = {f"_{n.path}": list(n.commands) for n in nodes}
    flags = {f"_{n.path}": n.flags for n in nodes}
    positionals = {f"_{n.path}": n.positional_choices for n in nodes}
    choices = {f"_{n.path} {f}": c for n in nodes for f, c in n.flag_choices.items()}
    return "\n".join(
        [
            f"# bash completion for {' and '.join(COMMANDS)}: {PROGRAM} completion bash",
            table("commands", commands),
            table("flags", flags),
            table("positionals", positionals),
            table("choices", choices),
            "_mtls_complete() {",
            "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} path=_ i",
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            '        case " ${_mtls_commands[$path]} " in',
            '            *" ${COMP_WORDS[i]} "*) path="$path/${COMP_WORDS[i]}" ;;',
            "        esac",
            "    done",
            '    local words=${_mtls_choices["$path $prev"]-}',
            "    if [[ -z $words && $cur == -* ]]; then words=${_mtls_flags[$path]}",
            "    elif [[ -z $words ]]; then",
            '        words="${_mtls_commands[$path]} ${_mtls_positionals[$path]}"',
            "    fi",
            '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
            "}",
            f"complete -o default -F _mtls_complete {' '.join(COMMANDS)}",
        ]
    )


def _zsh(root: Node) -> str:
    nodes = list(root.walk())
    lines = [
        f"#compdef {' '.join(COMMANDS)}",
        f"# zsh completion: {PROGRAM} completion zsh",
        "_mtls() {",
        "    local path=_ i",
        "    for ((i = 2; i < CURRENT; i++)); do",
        '        case "$path ${words[i]}" in',
    ]
    lines += [
        f'            {shlex.quote(f"_{n.path} {name}")}) path="$path/{name}" ;;'
        for n in nodes
        for name in n.commands
    ]
    lines += ["        esac", "    done", '    case "$path ${words[CURRENT-1]}" in']
    lines += [
        f"        {shlex.quote(f'_{n.path} {flag}')}) compadd -- {' '.join(map(shlex.quote, c))}"
        "; return ;;"
        for n in nodes
        for flag, c in n.flag_choices.items()
    ]
    lines += ["    esac", "    if [[ $PREFIX == -* ]]; then", "        case $path in"]
    lines += [
        f"            {shlex.quote(f'_{n.path}')}) compadd -- {' '.join(n.flags)} ;;"
        for n in nodes
        if n.flags
    ]
    lines += ["        esac", "        return", "    fi", "    case $path in"]
    lines += [
        f"        {shlex.quote(f'_{n.path}')}) "
        f"compadd -- {' '.join(map(shlex.quote, [*n.commands, *n.positional_choices]))} ;;"
        for n in nodes
        if n.commands or n.positional_choices
    ]
    lines += [
        "        *) _files ;;",
        "    esac",
        "}",
        "if (( $+functions[compdef] )); then",
        f"    compdef _mtls {' '.join(COMMANDS)}",
        "fi",
    ]
    return "\n".join(lines)


def _fish(root: Node) -> str:
    lines = [f"# fish completion: {PROGRAM} completion fish"]
    for node in root.walk():
        # On the path of this node, and not yet in one of its subcommands.
        parts = [f"__fish_seen_subcommand_from {n}" for n in node.path.split("/") if n]
        if node.commands:
            parts.append(f"not __fish_seen_subcommand_from {' '.join(node.commands)}")
        condition = f" -n {shlex.quote('; and '.join(parts))}" if parts else ""
        for command in COMMANDS:
            base = f"complete -c {command}{condition}"
            for name, child in node.commands.items():
                lines.append(f"{base} -f -a {name} -d {shlex.quote(child.summary)}")
            if node.positional_choices:
                lines.append(f"{base} -f -a {_words(node.positional_choices)}")
            for flag in node.flags:
                option = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
                choices = node.flag_choices.get(flag)
                values = f" -x -a {_words(choices)}" if choices else ""
                lines.append(f"{base} {option}{values}")
    return "\n".join(lines)
