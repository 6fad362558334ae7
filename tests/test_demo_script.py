"""
scripts/demo installs the project only when the installed copy is not the
tree's (scripts/installed-matches decides).
"""

from __future__ import annotations

import os
import runpy
import shutil

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

SCRIPTS = FilePath(__file__).parent().sibling("scripts")


class InstalledMatchesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.check = runpy.run_path(SCRIPTS.child("installed-matches").path)
        base = FilePath(self.mktemp())
        self.root, self.site = base.child("tree"), base.child("site")
        for folder in (self.root.descendant(["backupremote", "cli"]),
                       self.root.descendant(["twisted", "plugins"])):
            folder.makedirs()
        self.root.descendant(["backupremote", "__init__.py"]).setContent(b"")
        self.root.descendant(["backupremote", "cli", "main.py"]).setContent(b"x = 1\n")
        self.root.descendant(["backupremote", "cli", "notes.txt"]).setContent(b"not installed")
        self.root.descendant(["twisted", "plugins", "backupremote_plugins.py"]).setContent(b"")
        self.root.child("setup.cfg").setContent(b"[metadata]\nname = backupremote\n")
        self.stamp = base.child("stamp").path
        self.install()

    def install(self) -> None:
        """What pip would install: the modules and the dropin, then the stamp."""
        if self.site.exists():
            self.site.remove()
        shutil.copytree(self.root.child("backupremote").path,
                        self.site.child("backupremote").path,
                        ignore=shutil.ignore_patterns("*.txt"))
        self.site.descendant(["twisted", "plugins"]).makedirs()
        shutil.copy(self.root.descendant(["twisted", "plugins", "backupremote_plugins.py"]).path,
                    self.site.descendant(["twisted", "plugins"]).path)
        with open(self.stamp, "w") as stream:
            stream.write(self.check["buildStamp"](self.root.path))

    def matches(self) -> bool:
        return self.check["matches"](self.root.path, self.site.path, self.stamp)

    def test_sameTreeSkipsTheInstall(self) -> None:
        self.assertTrue(self.matches())
        # compiled files on either side do not count
        cache = self.site.descendant(["backupremote", "__pycache__"])
        cache.makedirs()
        cache.child("main.cpython-311.pyc").setContent(b"\0")
        self.assertTrue(self.matches())

    def test_changedModule(self) -> None:
        self.root.descendant(["backupremote", "cli", "main.py"]).setContent(b"x = 2\n")
        self.assertFalse(self.matches())
        self.install()
        self.assertTrue(self.matches())

    def test_newAndRemovedModules(self) -> None:
        self.root.descendant(["backupremote", "cli", "new.py"]).setContent(b"")
        self.assertFalse(self.matches())
        self.install()
        os.remove(self.root.descendant(["backupremote", "cli", "new.py"]).path)
        self.assertFalse(self.matches())  # still installed, gone from the tree

    def test_changedDependencies(self) -> None:
        self.root.child("setup.cfg").setContent(b"[options]\ninstall_requires = treq\n")
        self.assertFalse(self.matches())

    def test_nothingInstalled(self) -> None:
        self.site.remove()
        self.assertFalse(self.matches())
