"""
The documentation in C{docs/} is checked against the code.

docs/protocol.md must document every error code of the registry (and no
other), every command the server answers and every command the client
answers; docs/configuration.md must list exactly the keys the config
loaders read.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.config import loadClientConfig
from backupremote.client.connection.protocol import ClientProtocol
from backupremote.configfile import Section
from backupremote.protocol.errors import REGISTRY
from backupremote.server.config import loadServerConfig
from backupremote.protocol.commands import COMMANDS

DOCS = FilePath(__file__).parent().sibling("docs")

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_COMMAND_HEADING = re.compile(r"^###\s+`([A-Za-z][A-Za-z0-9_]*)`\s*$", re.MULTILINE)
_CODE_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)
# A backticked token shaped like an error code: upper case words joined by "_".
_CODE_LIKE = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)`")


def read(name: str) -> str:
    return DOCS.child(name).getContent().decode("utf-8")


def sections(text: str, level: int) -> dict[str, str]:
    """
    The body of every heading of C{level}, up to the next heading at that
    level or above (lines in fenced code blocks are never headings).
    """
    bodies: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        if match and len(match.group(1)) <= level:
            if current is not None:
                bodies[current] = "\n".join(lines)
            current = match.group(2) if len(match.group(1)) == level else None
            lines = []
        elif current is not None:
            lines.append(line)
    if current is not None:
        bodies[current] = "\n".join(lines)
    return bodies


def section(text: str, heading: str, level: int = 2) -> str:
    bodies = sections(text, level)
    if heading not in bodies:
        raise AssertionError(f"no {'#' * level} {heading} section")
    return bodies[heading]


def serverCommands() -> set[str]:
    """Every command name a server connection answers (tests/server/test_gate.py checks it)."""
    return set(COMMANDS)


def clientCommands() -> set[str]:
    """Every command name the client protocol answers."""
    protocol = ClientProtocol(Clock(), None, None)
    return {
        name.decode("ascii") for name in ClientProtocol._commandDispatch
        if protocol.locateResponder(name) is not None
    }


class ErrorCodeTests(SynchronousTestCase):
    """The "Error codes" table of docs/protocol.md is the registry."""

    def setUp(self) -> None:
        self.protocol = read("protocol.md")
        self.table = section(self.protocol, "Error codes")
        self.rows = {
            match.group(1): line
            for line in self.table.splitlines()
            if (match := _CODE_ROW.match(line))
        }

    def test_everyCodeHasARow(self) -> None:
        missing = sorted(set(REGISTRY) - set(self.rows))
        self.assertEqual(missing, [], "codes missing from the error table")

    def test_rowsAreInSyncWithTheRegistry(self) -> None:
        stale = [
            code for code, entry in REGISTRY.items()
            if code in self.rows
            and (entry.meaning not in self.rows[code] or entry.action not in self.rows[code])
        ]
        self.assertEqual(stale, [], "rows whose meaning or action differ from the registry")

    def test_noStaleRows(self) -> None:
        stale = sorted(set(self.rows) - set(REGISTRY))
        self.assertEqual(stale, [], "documented codes that are not in the registry")

    def test_noStaleCodesAnywhere(self) -> None:
        """Every error-code-like name in these docs is a registered code."""
        for name in ("protocol.md", "security.md"):
            found = set(_CODE_LIKE.findall(read(name)))
            self.assertEqual(sorted(found - set(REGISTRY)), [], f"unknown codes in {name}")


class CommandTests(SynchronousTestCase):
    """Every command the code answers has a heading in docs/protocol.md."""

    def setUp(self) -> None:
        protocol = read("protocol.md")
        self.clientToServer = set(_COMMAND_HEADING.findall(section(protocol, "Commands")))
        self.serverToClient = set(
            _COMMAND_HEADING.findall(section(protocol, "Server-to-client commands"))
        )

    def test_serverCommandsExist(self) -> None:
        self.assertTrue(serverCommands() >= {"auth", "capabilities", "ping"})

    def test_serverCommandsDocumented(self) -> None:
        missing = sorted(serverCommands() - self.clientToServer)
        self.assertEqual(missing, [], "server commands without a ### heading under ## Commands")

    def test_noStaleServerCommands(self) -> None:
        stale = sorted(self.clientToServer - serverCommands())
        self.assertEqual(stale, [], "### headings under ## Commands the server does not answer")

    def test_clientCommandsDocumented(self) -> None:
        self.assertIn("ping", clientCommands())
        missing = sorted(clientCommands() - self.serverToClient)
        self.assertEqual(missing, [], "client commands missing from ## Server-to-client commands")

    def test_noStaleClientCommands(self) -> None:
        stale = sorted(self.serverToClient - clientCommands())
        self.assertEqual(stale, [], "server-to-client headings the client does not answer")


_SERVER_TOML = """
[server]
data_dir = "data"
[tls]
key = "server.key"
cert = "server.crt"
[clients.laptop]
role = "admin"
"""

_CLIENT_TOML = """
[client]
id = "laptop"
secret_file = "client.secret"
license_file = "client.license"
[server]
address = "127.0.0.1:7443"
fingerprint = "%s"
[servers.east]
address = "127.0.0.1:7444"
fingerprints = ["%s"]
[notify.email]
host = "smtp.example.org"
from = "backups@example.org"
to = ["ops@example.org"]
[notify.webhook]
url = "https://hooks.example.org/backupremote"
secret_file = "webhook.secret"
""" % ("AB" * 32, "CD" * 32)


class ConfigurationTests(SynchronousTestCase):
    """docs/configuration.md lists exactly the keys the loaders read."""

    def readKeys(self, loader: Any, content: str) -> set[tuple[str, str]]:
        """The (section, key) pairs C{loader} reads from a minimal valid file."""
        read: set[tuple[str, str]] = set()
        take = Section._take

        def recordingTake(section: Section, key: str, *args: Any) -> Any:
            read.add((section._name, key))
            return take(section, key, *args)

        self.patch(Section, "_take", recordingTake)
        path = FilePath(self.mktemp())
        path.makedirs()
        config = path.child("config.toml")
        config.setContent(content.encode("utf-8"))
        loader(config)
        return read

    def documentedKeys(self, fileHeading: str) -> set[tuple[str, str]]:
        body = section(read("configuration.md"), fileHeading)
        keys = set()
        for heading, table in sections(body, 3).items():
            # one table per client, documented once: [clients.ID]; and
            # tables of tables: [notify.email]
            match = re.fullmatch(r"`\[([a-z_]+(?:\.ID|\.NAME|\.[a-z_]+)?)\]`", heading)
            self.assertIsNotNone(match, f"unexpected heading {heading!r} in {fileHeading}")
            assert match is not None
            for key in _CODE_ROW.findall(table):
                keys.add((match.group(1), key))
        return keys

    def test_serverKeys(self) -> None:
        read = {(re.sub(r"^clients\..*", "clients.ID", name), key)
                for name, key in self.readKeys(loadServerConfig, _SERVER_TOML)}
        self.assertEqual(self.documentedKeys("server.toml"), read)

    def test_clientKeys(self) -> None:
        read = {(re.sub(r"^servers\..*", "servers.NAME", name), key)
                for name, key in self.readKeys(loadClientConfig, _CLIENT_TOML)}
        self.assertEqual(self.documentedKeys("client.toml"), read)


class StagingPathTests(SynchronousTestCase):
    """The staging path the docs name is the one the server uses."""

    def test_runsFolderPerDataFolder(self) -> None:
        from backupremote.server.staging import runsFolderName

        name = runsFolderName(FilePath("/srv/backupremote/data"))
        self.assertRegex(name, r"^runs-[0-9a-f]{12}$")
        self.assertNotEqual(name, runsFolderName(FilePath("/srv/other/data")))
        for doc in ("configuration.md", "protocol.md", "security.md"):
            text = read(doc)
            self.assertIn("runs-<id>/", text, doc)
            self.assertNotIn("`runs/", text, doc)


class ClientLibraryTableTests(SynchronousTestCase):
    """docs/protocol.md "Client library (Python)" lists every public method."""

    def test_everyPublicMethodHasARow(self) -> None:
        from backupremote.client import BackupRemoteClient

        table = section(read("protocol.md"), "Client library (Python)")
        documented = set(re.findall(r"^\|\s*`(?:BackupRemoteClient\.)?(\w+)\(", table,
                                    re.MULTILINE))
        public = {name for name in dir(BackupRemoteClient)
                  if not name.startswith("_") and callable(getattr(BackupRemoteClient, name))}
        self.assertEqual(documented, public)


class TransferDocsTests(SynchronousTestCase):
    """What docs/protocol.md says of the chunks in one box is what the server sends."""

    def test_chunksPerBox(self) -> None:
        from backupremote.protocol.transfers import CHUNKS_PER_BOX

        text = read("protocol.md")
        rows = [line for line in text.splitlines() if line.startswith("| `chunks` |")]
        counts = [int(n) for line in rows for n in re.findall(r"\(?1 to (\d+)", line)]
        self.assertEqual(len(counts), 2, rows)
        self.assertEqual(set(counts), {CHUNKS_PER_BOX})


class ErrorActionTests(SynchronousTestCase):
    """What an error's action names exists: config keys, wire commands, CLI commands."""

    def configKeys(self) -> set[str]:
        body = read("configuration.md")
        keys = set()
        for fileHeading in ("server.toml", "client.toml"):
            for table in sections(section(body, fileHeading), 3).values():
                keys.update(_CODE_ROW.findall(table))
        return keys

    def test_namedKeysAndCommandsExist(self) -> None:
        from backupremote.cli.main import buildParser

        keys = self.configKeys()
        commands = serverCommands()
        parser = buildParser()
        wrong = []
        for code, entry in REGISTRY.items():
            for token in re.findall(r"`([^`]+)`", entry.action):
                if token.startswith("backupremote "):
                    words = [w for w in token.split()[1:] if not w.startswith("-")]
                    if not _isCommandPath(parser, words):
                        wrong.append((code, token))
                elif re.fullmatch(r"\[[a-z_.]+\] [a-z_]+", token):
                    if token.split()[1] not in keys:
                        wrong.append((code, token))
                elif re.fullmatch(r"[a-z_]+", token):
                    if token not in keys and token not in commands:
                        wrong.append((code, token))
        self.assertEqual(wrong, [], "actions naming a key or command that does not exist")


def _isCommandPath(parser: Any, words: list[str]) -> bool:
    """Whether the leading C{words} that look like commands are subcommands, in order."""
    import argparse

    for word in words:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            return True  # the rest are arguments
        if word not in subparsers[0].choices:
            return word.isupper() or word.startswith(("ID", "NAME", "RUNID", "..."))
        parser = subparsers[0].choices[word]
    return True


class CLIDocsTests(SynchronousTestCase):
    """docs/cli.md covers every command the parser has."""

    def test_everyCommandDocumented(self) -> None:
        from backupremote.cli.main import buildParser
        from backupremote.cli.parsertree import commandTree

        text = read("cli.md")
        missing = [command.name for command in commandTree(buildParser()).subcommands
                   if f"### `{command.name}" not in text
                   and f"### `backupremote --config DIR/client.toml {command.path[0]}" not in text]
        self.assertEqual(missing, [], "commands without a ### heading in docs/cli.md")


class CapabilitiesExampleTests(SynchronousTestCase):
    """The capabilities answers docs/protocol.md shows are what the model sends, key for key."""

    def test_examplesHaveEveryKey(self) -> None:
        from backupremote.protocol.models import Capabilities
        from backupremote.protocol.structured import converter

        text = sections(read("protocol.md"), 3)["`capabilities`"]
        examples = [json.loads(block) for block in
                    re.findall(r"```json\n(\{\"apiVersions\".*?)\n```", text, re.S)]
        self.assertEqual(len(examples), 2, "before auth and after auth")
        for example in examples:
            model = converter.structure(example, Capabilities)
            self.assertEqual(converter.unstructure(model), example)
