"""
The command line as data, read from the argparse parser itself: what shell
completion and the man page are generated from, so that neither keeps a
list of its own.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from attrs import frozen


@frozen
class Option:
    """One option of a command: C{-v}, C{--verbose}; whether it takes a value."""

    strings: tuple[str, ...]
    help: str
    takesValue: bool
    metavar: str | None
    choices: tuple[str, ...]


@frozen
class Positional:
    name: str
    help: str
    choices: tuple[str, ...]
    optional: bool


@frozen
class Command:
    """A command (the program itself has the empty path) and what it takes."""

    path: tuple[str, ...]
    help: str
    description: str
    epilog: str
    usage: str
    options: tuple[Option, ...]
    positionals: tuple[Positional, ...]
    subcommands: tuple[Command, ...]

    def walk(self) -> Iterator[Command]:
        """This command and every command under it, depth first, in order."""
        yield self
        for sub in self.subcommands:
            yield from sub.walk()

    @property
    def name(self) -> str:
        return " ".join(("backupremote", *self.path))


def _text(value: str | None) -> str:
    return "" if value in (None, argparse.SUPPRESS) else " ".join(str(value).split())


def commandTree(parser: argparse.ArgumentParser, path: tuple[str, ...] = (),
                help: str = "") -> Command:
    """The command of C{parser} and, recursively, its subcommands (hidden options left out)."""
    options: list[Option] = []
    positionals: list[Positional] = []
    subcommands: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen or name.startswith("_"):
                    continue  # an alias, or a hidden command
                seen.add(id(sub))
                subcommands.append(commandTree(sub, (*path, name), _text(helps.get(name))))
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            options.append(Option(
                tuple(action.option_strings), _text(action.help), action.nargs != 0,
                _text(action.metavar) or None,
                tuple(map(str, action.choices)) if action.choices else ()))
        else:
            positionals.append(Positional(
                _text(action.metavar) or action.dest, _text(action.help),
                tuple(map(str, action.choices)) if action.choices else (),
                action.nargs in ("?", "*")))
    return Command(path, help, _text(parser.description), _text(parser.epilog),
                   _text(parser.format_usage().removeprefix("usage: ")), tuple(options),
                   tuple(positionals), tuple(subcommands))
