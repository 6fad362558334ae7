"""
The CLI starts fast because it imports only what a command uses: what
C{backupremote --help}, C{--version} and a parsed command import, checked
in a fresh interpreter (timings are for benchmarks/cli_startup.py, not for a
test), and the table of commands that makes it possible.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types

from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.commands import COMMANDS, LazyCommands
from backupremote.cli.main import buildParser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: what no command needs to print its help (each costs tens of milliseconds or more)
HEAVY = (
    "twisted.internet.reactor",
    "twisted.internet.defer",
    "twisted.protocols.amp",
    "twisted.conch",
    "twisted.web",
    "twisted.mail",
    "OpenSSL",
    "cryptography",
    "sqlite3",
    "treq",
    "cattrs",
    "prometheus_client",
    "asyncio",
)

#: modules of the client's daemon and of the server that a command to a server never needs
NOT_FOR_A_REMOTE_COMMAND = (
    "backupremote.server",
    "backupremote.client.service",
    "backupremote.client.web",
    "backupremote.client.notify.smtp",
    "backupremote.client.notify.webhook",
    "backupremote.client.notify.events",
    "backupremote.client.notify.notifier",
    "backupremote.client.notify.license",
    "backupremote.client.connection.watch",
    "backupremote.client.schedules",
    "backupremote.client.destinations",
    "backupremote.client.delivery.queue",
    "backupremote.client.delivery.jobdelivery",
    "backupremote.client.jobs.runner",
    "backupremote.metrics.client",
    "backupremote.metrics.endpoint",
    "backupremote.metrics.server",
    "backupremote.cli.demo",
    "backupremote.cli.schedules",
    "backupremote.cli.verify",
    "backupremote.cli.licensing",
    "treq",
    "twisted.conch",
    "twisted.mail",
    "twisted.web",
    "twisted.application",  # the daemon's reconnecting service; a command connects once
    "prometheus_client",
)


def runFresh(code: str) -> subprocess.CompletedProcess[str]:
    """C{code} run by a fresh interpreter on this tree (without coverage)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("COVERAGE_")}  # coverage itself imports sqlite3
    env["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def modulesAfter(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running C{code}."""
    done = runFresh(code + "\nimport json, sys\n"
                    "sys.__stdout__.write('\\n' + json.dumps(sorted(sys.modules)))")
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return set(json.loads(done.stdout.splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Those of C{names} (or their submodules) that are in C{modules}."""
    return sorted(name for name in names
                  if any(module == name or module.startswith(name + ".") for module in modules))


def runMain(*argv: str) -> str:
    return ("import contextlib, io\n"
            "from backupremote.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main({list(argv)!r})\n")


class StartupImportsTests(SynchronousTestCase):
    """What the CLI imports before it does anything."""

    def test_help(self) -> None:
        """C{backupremote --help} imports no command's module and nothing heavy."""
        modules = modulesAfter(runMain("--help"))
        self.assertEqual(loaded(modules, HEAVY), [])
        self.assertEqual(sorted(f"backupremote.cli.{module}" for _, module, _ in COMMANDS
                                if f"backupremote.cli.{module}" in modules), [])

    def test_version(self) -> None:
        modules = modulesAfter(runMain("--version"))
        self.assertEqual(loaded(modules, HEAVY), [])

    def test_commandHelp(self) -> None:
        """C{backupremote db --help} imports the module of C{db} and no other command's."""
        modules = modulesAfter(runMain("db", "--help"))
        self.assertIn("backupremote.cli.databases", modules)
        others = {f"backupremote.cli.{module}" for _, module, _ in COMMANDS} - {
            "backupremote.cli.databases", "backupremote.cli.remote"}
        self.assertEqual(sorted(others & modules), [])

    def test_remoteCommand(self) -> None:
        """
        A command to a server (C{db list}: parsed, with the client library,
        client.toml's parser and the client's store it reads the last
        backups from) imports neither the server's modules nor the client
        daemon's (job runner, scheduler, destinations, delivery, the
        notifier and its events, dashboard, metrics, the reconnecting
        service), nor their libraries.
        """
        modules = modulesAfter(
            "from backupremote.cli.main import buildParser\n"
            "buildParser(whole=False).parse_args(['db', 'list'])\n"
            "import backupremote.client.api, backupremote.client.config\n"
            "import backupremote.client.jobs.store, backupremote.client.store\n"
            "import backupremote.cli.remote, backupremote.client.connection.oneshot\n"
        )
        self.assertEqual(loaded(modules, NOT_FOR_A_REMOTE_COMMAND), [])

    def test_jobCommand(self) -> None:
        """
        A command that drives a job (C{download}: parsed, with the job
        runner of the client's folder as it builds it) imports none of the
        destinations, the delivery queue, the licences it checks, or the
        notifier and its events: a job without a destination delivers
        nothing (L{backupremote.client.jobs.delivery.DeliveryWhenNeeded}).
        """
        modules = modulesAfter(
            "import tempfile\n"
            "from backupremote.cli.main import buildParser\n"
            "buildParser(whole=False).parse_args(['download', 'RUNID', 'DIR'])\n"
            "import backupremote.cli.transfers\n"
            "from twisted.internet import reactor\n"
            "from twisted.python.filepath import FilePath\n"
            "from backupremote.client.jobs import jobRunnerIn\n"
            "from backupremote.client.delivery import licensesOf\n"
            "licenses = licensesOf(None, lambda: None)\n"
            "jobRunnerIn(reactor, FilePath(tempfile.mkdtemp()), object(), lambda name: None,\n"
            "            licenses=licenses)\n"
        )
        self.assertIn("backupremote.client.jobs.runner", modules)
        self.assertEqual(loaded(modules, (
            "backupremote.client.destinations",
            "backupremote.client.delivery.queue",
            "backupremote.client.delivery.jobdelivery",
            "backupremote.client.delivery.licence",
            "backupremote.client.schedules",
            "backupremote.client.notify.notifier",
            "backupremote.client.notify.events",
            "backupremote.license",
            "treq",
            "twisted.conch",
        )), [])


#: what the console script does first (L{backupremote.cli.lazyimports})
DEFER = "from backupremote.cli.lazyimports import deferUnusedImports\ndeferUnusedImports()\n"


class DeferredImportsTests(SynchronousTestCase):
    """
    What a dependency imports and no command uses is loaded on first use
    (L{backupremote.cli.lazyimports}), as the console script runs.
    """

    def test_remoteCommandLeavesTheCookieJarChainUnloaded(self) -> None:
        """
        Twisted's compat module imports C{http.cookiejar}; deferred, its
        chain (C{urllib.request}, C{http.client}, C{email.parser}) is not
        executed by a command to a server.
        """
        chain = ("urllib.request", "http.client", "email.parser")
        imports = ("from backupremote.cli.main import buildParser\n"
                   "buildParser(whole=False).parse_args(['db', 'list'])\n"
                   "import backupremote.cli.remote, backupremote.client.connection.oneshot\n")
        self.assertEqual(loaded(modulesAfter(imports), chain), sorted(chain))
        deferred = modulesAfter(DEFER + imports)
        self.assertEqual(loaded(deferred, chain), [])
        self.assertIn("twisted.python.compat", deferred)

    def test_deferredModuleWorksOnUse(self) -> None:
        """The first attribute used loads it as usual."""
        modules = modulesAfter(
            DEFER +
            "import twisted.python.compat\n"
            "from http import cookiejar\n"
            "assert cookiejar.CookieJar().__class__.__name__ == 'CookieJar'\n")
        self.assertIn("urllib.request", modules)

    def test_consoleScriptDefers(self) -> None:
        """C{run()}, the console script's entry point, defers them before the command runs."""
        modules = modulesAfter(
            "import sys\n"
            "from backupremote.cli import main\n"
            "sys.argv = ['backupremote', '--version']\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main.run()\n"
            "    except SystemExit:\n"
            "        pass\n"
            "from http import cookiejar\n"
            "assert type(cookiejar).__name__ == '_LazyModule', type(cookiejar)\n")
        self.assertNotIn("urllib.request", modules)


class ShutdownTests(SynchronousTestCase):
    """What the console script does once the command has its exit code."""

    def test_objectsFrozenForTheShutdown(self) -> None:
        """
        C{run()} freezes what the process holds before it exits (the
        interpreter's shutdown then skips collecting it), and exits with the
        command's code.
        """
        done = runFresh(
            "import atexit, gc, os, sys\n"
            "atexit.register(lambda: os.write(1, b'frozen %d' % gc.get_freeze_count()))\n"
            "from backupremote.cli import main\n"
            "sys.argv = ['backupremote', 'no-such-command']\n"
            "main.run()\n")
        self.assertEqual(done.returncode, 2, done.stderr)  # EXIT_USAGE
        frozen = int(done.stdout.rsplit("frozen ", 1)[1])
        self.assertGreater(frozen, 10_000)


class CommandTableTests(SynchronousTestCase):
    """L{COMMANDS} says what the modules register."""

    def test_tableMatchesModules(self) -> None:
        """
        Every top-level command a module registers is in the table, with the
        module that registers it and the same help, in the table's order.
        """
        parser = buildParser()
        [commands] = [action for action in parser._actions
                      if isinstance(action, argparse._SubParsersAction)]
        registered = [(choice.dest, choice.help) for choice in commands._choices_actions]
        self.assertEqual(registered, [(name, help) for name, _, help in COMMANDS])
        self.assertEqual(list(commands.choices), [name for name, _, _ in COMMANDS])
        self.assertEqual(commands._pending, {})

    def test_lazyTreeIsTheWholeTree(self) -> None:
        """
        A command parsed through the lazy parser gets the same options as in
        the whole tree (C{--json} after the command included).
        """
        lazy = buildParser(whole=False).parse_args(["db", "list", "--json"])
        whole = buildParser().parse_args(["db", "list", "--json"])
        self.assertEqual(sorted(vars(lazy)), sorted(vars(whole)))
        self.assertTrue(lazy.json)


def lazyCommands() -> tuple[argparse.ArgumentParser, LazyCommands]:
    parser = argparse.ArgumentParser(prog="p")
    commands = parser.add_subparsers(dest="command", action=LazyCommands)
    assert isinstance(commands, LazyCommands)
    return parser, commands


class LazyCommandsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.imported: list[str] = []
        self.patch(sys, "modules", dict(sys.modules))

    def fakeModule(self, name: str, commands: tuple[str, ...]) -> None:
        module = types.ModuleType(f"backupremote.cli.{name}")

        def register(subparsers: LazyCommands) -> None:
            self.imported.append(name)
            for command in commands:
                subparsers.add_parser(command, help=f"real {command}").add_argument("--x")

        module.register = register  # type: ignore[attr-defined]
        sys.modules[module.__name__] = module

    def test_loadedWhenParsed(self) -> None:
        """A command's module is imported when its command is parsed, and only then."""
        self.fakeModule("fakeone", ("one", "uno"))
        self.fakeModule("faketwo", ("two",))
        parser, commands = lazyCommands()
        commands.addLazy("one", "fakeone", "real one")
        commands.addLazy("two", "faketwo", "real two")
        commands.addLazy("uno", "fakeone", "real uno")
        self.assertEqual(self.imported, [])
        parsed = parser.parse_args(["uno", "--x", "1"])
        self.assertEqual((self.imported, parsed.command, parsed.x), (["fakeone"], "uno", "1"))
        self.assertEqual(list(commands.choices), ["one", "two", "uno"])
        self.assertEqual([action.dest for action in commands._choices_actions],
                         ["one", "two", "uno"])
        commands.loadAll()
        self.assertEqual(self.imported, ["fakeone", "faketwo"])

    def test_moduleMustRegisterItsCommands(self) -> None:
        """A table line naming a command its module does not register is an error at load."""
        self.fakeModule("fakeone", ("one",))
        _, commands = lazyCommands()
        commands.addLazy("one", "fakeone", "real one")
        commands.addLazy("eins", "fakeone", "real eins")
        error = self.assertRaises(RuntimeError, commands.load, "one")
        self.assertIn("eins", str(error))
