"""
The top-level commands of ``backupremote`` and the module of each.

``backupremote --help`` and ``--version`` must answer at once, and a command
should import only what it uses: ``db list`` has no business loading the
server's pipeline, the scheduler or the licence signer. So the parser knows
every top-level command from L{COMMANDS} alone (its name, its one line of
help, the module that implements it), and a command's module is imported,
and its C{register(commands)} called, only when that command is on the
command line, or when the whole tree is wanted (shell completion, the man
page, the docs' tests: L{LazyCommands.loadAll}).

To add a command: write C{backupremote/cli/MODULE.py} with
C{register(commands)} as the others do, and add one line to L{COMMANDS}
(the help must be the one C{register} gives; C{tests/cli/test_startup.py}
checks that, and which modules C{--help} imports). Keep this module light:
C{argparse} and C{importlib} only.
"""

from __future__ import annotations

import argparse
import importlib
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _SubParsers = argparse._SubParsersAction

#: (command, module under backupremote.cli, help) in the order --help lists them
COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("server", "serveradmin", "set up and administer a server"),
    ("license", "licensing", "issuer keys and licence tokens"),
    ("client", "clientadmin", "set up a client"),
    ("capabilities", "remote", "what the server offers this client"),
    ("metrics", "remote", "the server's counters, timings and current load"),
    ("db", "databases", "database configurations kept on the server"),
    ("preflight", "databases", "blockers and warnings for a backup of a configuration"),
    ("run", "runs", "command a backup of a configuration now"),
    ("status", "runs", "the status of a run"),
    ("cancel", "runs", "cancel a queued or running backup"),
    ("files", "transfers", "the staged artifact of a finished run (its manifest)"),
    ("download", "transfers", "fetch a run's artifact into a folder, verified and resumable"),
    ("release", "transfers", "let the server delete a run's staged artifact"),
    ("schedule", "schedules", "the client's schedules (fired by the client daemon)"),
    ("dest", "destinations", "the client's destinations (where runs are delivered)"),
    ("queue", "queue", "downloads and deliveries: in flight, waiting to retry (why), failed (why)"),
    ("runs", "history", "the history of this client's runs, from its own store"),
    ("servers", "servers", "the servers of client.toml: connected, licence expiry, last error"),
    ("check", "check", "configuration, servers, licences (days left), databases, destinations, "
     "clock skew"),
    ("demo", "demo", "run the whole job on loopback with an embedded SQLite database"),
    ("verify", "verify", "check a downloaded artifact offline: sha256, decompression, format"),
    ("completion", "completion", "print a shell completion script (bash, zsh or fish)"),
    ("manpage", "manpage", "print the backupremote(1) manual page (roff)"),
)


class LazyCommands(_SubParsers):
    """
    Subcommands whose parsers are made only when needed.

    L{addLazy} puts a placeholder parser (a name and a help line) in the
    choices; when argparse reaches that command, or on L{loadAll}, the
    module is imported and its C{register(self)} replaces the placeholders
    of every command it defines. The order of L{addLazy} is kept.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: command -> module, for commands whose module is not loaded yet
        self._pending: dict[str, str] = {}
        self._order: dict[str, int] = {}
        #: called with nothing after each module registered its commands
        self.onLoad: Callable[[], None] = lambda: None

    def addLazy(self, name: str, module: str, help: str) -> None:
        self.add_parser(name, help=help)
        self._pending[name] = module
        self._order[name] = len(self._order)

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name in self._pending:
            # the module's own parser replaces the placeholder
            del self._pending[name]
            del self._name_parser_map[name]
            self._choices_actions[:] = [
                action for action in self._choices_actions if action.dest != name
            ]
        parser = super().add_parser(name, **kwargs)
        self._keepOrder()
        return parser

    def _keepOrder(self) -> None:
        last = len(self._order)
        self._choices_actions.sort(key=lambda action: self._order.get(action.dest, last))
        ordered = sorted(self._name_parser_map.items(),
                         key=lambda item: self._order.get(item[0], last))
        self._name_parser_map.clear()
        self._name_parser_map.update(ordered)

    def load(self, name: str) -> None:
        """Import the module of command C{name} (once) and let it register its commands."""
        module = self._pending.get(name)
        if module is None:
            return
        importlib.import_module(f"backupremote.cli.{module}").register(self)
        left = [command for command, of in self._pending.items() if of == module]
        if left:
            raise RuntimeError(
                f"backupremote.cli.{module} did not register {', '.join(left)}: "
                f"see backupremote.cli.commands.COMMANDS")
        self.onLoad()

    def loadAll(self) -> None:
        """Load every command: the whole tree, for completion, the man page and tests."""
        for name in list(self._order):
            self.load(name)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        self.load(values[0])
        super().__call__(parser, namespace, values, option_string)
