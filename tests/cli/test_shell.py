"""
Shell completion and the man page, generated from the parser: run in the
real shells (bash, zsh, fish) and rendered by the real groff.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from contextlib import redirect_stdout

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.completion import script
from backupremote.cli.main import buildParser, main
from backupremote.cli.manpage import escape, manual
from backupremote.cli.parsertree import commandTree
from backupremote.protocol.databases import ENGINES
from backupremote.protocol.options import COMPRESSIONS


def program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: run scripts/install-test-servers")
    return found


class CompletionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tree = commandTree(buildParser())
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()

    def scriptFile(self, shell: str) -> str:
        path = self.folder.child(f"completion.{shell}")
        path.setContent(script(shell, self.tree).encode("utf-8"))
        return path.path

    def bash(self, *words: str) -> list[str]:
        """What bash offers for C{words} (the last one is being typed)."""
        quoted = " ".join(f"'{w}'" for w in words)
        code = (f"source {self.scriptFile('bash')}\nCOMP_WORDS=(backupremote {quoted})\n"
                "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n_backupremote\n"
                'printf "%s\\n" "${COMPREPLY[@]}"\n')
        done = subprocess.run([program("bash"), "--norc", "-c", code], capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(done.stderr, "")
        return [line for line in done.stdout.splitlines() if line]

    def zsh(self, *words: str) -> list[str]:
        """What zsh is given to offer (zsh itself then filters by the typed prefix)."""
        quoted = " ".join(f"'{w}'" for w in words)
        code = (f"source {self.scriptFile('zsh')}\n"
                'compadd() { [[ $1 == -- ]] && shift; print -rl -- "$@"; }\n'
                "_files() { print -r -- '<files>'; }\n"
                f"words=(backupremote {quoted}); CURRENT=$#words\n_backupremote\n")
        done = subprocess.run([program("zsh"), "-f", "-c", code], capture_output=True,
                              text=True, timeout=30)
        self.assertEqual(done.stderr, "")
        return [line for line in done.stdout.splitlines() if line]

    def fish(self, line: str) -> list[str]:
        done = subprocess.run(
            [program("fish"), "--no-config", "-c",
             f"source {self.scriptFile('fish')}; complete -C '{line}'"],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(done.stderr, "")
        return [entry.split("\t")[0] for entry in done.stdout.splitlines()]

    def test_bashEverySubcommand(self) -> None:
        """Each command path offers exactly its subcommands, as the parser has them."""
        for command in self.tree.walk():
            if command.subcommands:
                self.assertEqual(self.bash(*command.path, ""),
                                 [sub.path[-1] for sub in command.subcommands], command.path)
        self.assertIn("demo", self.bash("de"))
        self.assertIn("completion", self.bash("comp"))

    def test_bashOptionsAndChoices(self) -> None:
        self.assertEqual(self.bash("--config", "c.toml", "db", "a"), ["add"])
        self.assertEqual(self.bash("db", "add", "shop", "--engine", ""), list(ENGINES))
        self.assertEqual(self.bash("db", "add", "shop", "--eng"), ["--engine"])
        self.assertEqual(self.bash("-q", "run", "shop", "--compression", "z"),
                         [c for c in COMPRESSIONS if c.startswith("z")])
        self.assertEqual(self.bash("completion", ""), ["bash", "zsh", "fish"])
        # a value that is a file: left to bash's own completion
        self.assertEqual(self.bash("db", "add", "shop", "--path", ""), [])

    def test_zsh(self) -> None:
        self.assertEqual(self.zsh("--config", "c.toml", "db", "a"),
                         ["add", "list", "show", "update", "remove", "test"])
        self.assertEqual(self.zsh("db", "add", "shop", "--engine", ""), list(ENGINES))
        self.assertIn("--no-test", self.zsh("db", "add", "shop", "--"))
        self.assertEqual(self.zsh("db", "add", "shop", "--path", ""), ["<files>"])
        self.assertEqual(self.zsh(""), [c.path[-1] for c in self.tree.subcommands])

    def test_fish(self) -> None:
        self.assertEqual(sorted(self.fish("backupremote d")), ["db", "demo", "dest", "download"])
        self.assertEqual(self.fish("backupremote --config c.toml db a"), ["add"])
        self.assertEqual(sorted(self.fish("backupremote db add shop --engine ")),
                         sorted(ENGINES))
        self.assertEqual(self.fish("backupremote db add shop --eng"), ["--engine"])
        self.assertEqual(sorted(self.fish("backupremote server clients ")),
                         sorted(c.path[-1] for c in self.tree.walk()
                                if c.path[:2] == ("server", "clients") and len(c.path) == 3))

    def test_command(self) -> None:
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(main(["completion", "bash"]), 0)
        self.assertTrue(out.getvalue().startswith("# bash completion for backupremote"))
        self.assertEqual(main(["completion", "tcsh"]), 2)


class ManPageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tree = commandTree(buildParser())
        self.page = FilePath(self.mktemp())
        self.page.setContent(manual(self.tree).encode("utf-8"))

    def test_groffWarnsOfNothing(self) -> None:
        done = subprocess.run([program("groff"), "-man", "-ww", "-z", self.page.path],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual((done.returncode, done.stderr), (0, ""))

    def test_everyCommandAndExitCode(self) -> None:
        done = subprocess.run([program("groff"), "-man", "-Tutf8", "-P-cbou", self.page.path],
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})
        text = done.stdout.replace("\u2010", "-").replace("\u2212", "-")
        for command in self.tree.walk():
            if command.path and not command.subcommands:
                self.assertIn(command.name, text)
                for option in command.options:
                    self.assertIn(option.strings[-1], text, command.name)
        self.assertIn("EXIT STATUS", text)
        self.assertIn("130", text)
        self.assertIn("Example: backupremote", text)

    def test_escape(self) -> None:
        self.assertEqual(escape(".hidden\n'quote\n--json \\n"),
                         "\\&.hidden\n\\&'quote\n\\-\\-json \\en")

    def test_command(self) -> None:
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(main(["manpage"]), 0)
        self.assertTrue(out.getvalue().startswith(".TH BACKUPREMOTE 1"))
