"""
``backupremote manpage``: the backupremote(1) manual page, in roff,
generated from the argparse parser (L{commandTree}) and the exit codes of
L{backupremote.cli.output}: every command with its usage, what it does,
its options and its example.

    backupremote manpage | man -l -
    backupremote manpage > ~/.local/share/man/man1/backupremote.1
"""

from __future__ import annotations

import argparse
import re
from datetime import date
from typing import Any

from backupremote import __version__
from backupremote.cli import output as outputModule
from backupremote.cli.output import Output
from backupremote.cli.parsertree import Command, commandTree

#: What each exit code means, for EXIT STATUS (the codes are output.py's).
EXIT_MEANINGS = {
    "EXIT_OK": "success",
    "EXIT_INTERNAL": "internal error (INTERNAL_ERROR, or an unexpected failure)",
    "EXIT_USAGE": "usage error: unknown command or option, missing argument",
    "EXIT_CONFIG": "configuration: CONFIG_INVALID (a config file, or a value on the "
                   "command line)",
    "EXIT_AUTH": "authentication or licence: AUTH_FAILED, AUTH_RATE_LIMITED, any "
                 "LICENSE_* code",
    "EXIT_CONNECTION": "connection: CONNECTION_FAILED, TIMEOUT, any TLS_* code",
    "EXIT_REFUSED": "any other refusal, a failed connection test, a preflight blocker, "
                    "a run that failed or was cancelled",
    "EXIT_INTERRUPTED": "interrupted (Ctrl-C)",
}


def register(commands: Any) -> None:
    manpage = commands.add_parser(
        "manpage", help="print the backupremote(1) manual page (roff)",
        description="Print the manual page, made from this program's own commands and "
        "options.",
        epilog="example: backupremote manpage | man -l -   or   backupremote manpage > "
        "~/.local/share/man/man1/backupremote.1",
    )
    manpage.set_defaults(run=manpageCommand)


def manpageCommand(args: argparse.Namespace, output: Output) -> int:
    from backupremote.cli.main import buildParser

    output.out.write(manual(commandTree(buildParser())))
    return 0


def escape(text: str) -> str:
    """Text for roff: backslashes and hyphens escaped, no line taken for a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.splitlines())


def _paragraphs(text: str) -> str:
    return escape(text) if text else ""


def _optionItem(strings: tuple[str, ...], metavar: str | None, takesValue: bool) -> str:
    value = f" \\fI{escape(metavar or 'VALUE')}\\fR" if takesValue else ""
    return ", ".join(f"\\fB{escape(s)}\\fR" for s in strings) + value


def _command(command: Command) -> list[str]:
    lines = [f".SS {escape(command.name)}", escape(command.help or command.description)]
    # optional break points after the commas of long choice lists
    lines += [".PP", ".B Usage:", ".na", escape(command.usage).replace(",", ",\\:"), ".ad"]
    if command.description and command.description != command.help:
        lines += [".PP", escape(command.description)]
    for positional in command.positionals:
        lines += [".TP", f"\\fI{escape(positional.name)}\\fR"
                  + (" (optional)" if positional.optional else ""),
                  escape(positional.help or "")
                  + (f" One of: {escape(', '.join(positional.choices))}."
                     if positional.choices else "")]
    for option in command.options:
        if option.strings[0] in ("-h",):
            continue
        metavar = option.metavar or option.strings[-1].lstrip("-").upper().replace("-", "_")
        lines += [".TP", _optionItem(option.strings, metavar, option.takesValue),
                  escape(option.help or "")
                  + (f" One of: {escape(', '.join(option.choices))}." if option.choices
                     else "")]
    if command.epilog:
        lines += [".PP", escape(re.sub(r"^examples?: ", "Example: ", command.epilog))]
    return lines


def manual(tree: Command) -> str:
    """The whole page."""
    top = [c for c in tree.subcommands]
    lines = [
        f'.TH BACKUPREMOTE 1 "{date.today():%Y-%m-%d}" "backupremote {__version__}" '
        '"User Commands"',
        ".SH NAME",
        "backupremote \\- " + escape(tree.description.rstrip(".")
                                     or "remote-orchestrated database backups"),
        ".SH SYNOPSIS",
        ".B backupremote",
        "[\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fB\\-\\-json\\fR] [\\fB\\-v\\fR|\\fB\\-q\\fR] "
        "\\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".SH DESCRIPTION",
        "A backupremote server lives next to the databases; a client commands it over AMP on "
        "TLS. This program sets both up and drives the server from the client: database "
        "configurations, connection tests, backups, downloads. Every command has "
        "\\fB\\-\\-json\\fR for scripts; errors print their registry code and what to do.",
        ".PP",
        "Commands: " + escape(", ".join(c.path[-1] for c in top)) + ".",
        ".SH GLOBAL OPTIONS",
    ]
    for option in tree.options:
        metavar = option.metavar or option.strings[-1].lstrip("-").upper()
        lines += [".TP", _optionItem(option.strings, metavar, option.takesValue),
                  escape(option.help or "")]
    lines.append(".SH COMMANDS")
    for command in tree.walk():
        if command.path and not command.subcommands:
            lines += _command(command)
    lines.append(".SH EXIT STATUS")
    for name, meaning in EXIT_MEANINGS.items():
        lines += [".TP", f"\\fB{getattr(outputModule, name)}\\fR", escape(meaning)]
    lines += [
        ".SH FILES",
        ".TP", "\\fIDIR/client.toml\\fR",
        "The client's configuration, written by \\fBbackupremote client init\\fR.",
        ".TP", "\\fIDIR/server.toml\\fR",
        "The server's configuration, written by \\fBbackupremote server init\\fR.",
        ".SH SEE ALSO",
        "\\fBtwistd\\fR(1): \\fBtwistd \\-n backupremote\\-server \\-\\-config DIR/server.toml"
        "\\fR and \\fBtwistd \\-n backupremote\\-client \\-\\-config DIR/client.toml\\fR run "
        "the daemons. The project's docs/cli.md, docs/configuration.md and docs/protocol.md.",
        "",
    ]
    return "\n".join(lines)
