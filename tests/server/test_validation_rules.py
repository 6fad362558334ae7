"""
The same text rules for every engine: database names that cannot read as
options or climb out of a folder, and bounded file paths without control
characters.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.errors import BackupRemoteError
from backupremote.server.databases.validation import MAX_PATH, validateConfig
from backupremote.server.engines import defaultEngines

ENGINES = defaultEngines()

#: the fields each engine needs besides the one under test
SERVER_FIELDS: dict[str, dict[str, Any]] = {
    "postgresql": {"host": "db.example", "user": "backup"},
    "mariadb": {"host": "db.example", "user": "backup"},
    "firebird": {"host": "db.example", "user": "SYSDBA"},
}

#: text a database name or path might be made of, control characters included
tricky = st.lists(st.sampled_from(
    list("aZ09_$./:- ") + ["..", "/..", "\n", "\t", "\r", "\x00", "\x1b", "\x7f", "é"]),
    max_size=30).map("".join)


def refusedFields(config: DatabaseConfigInput, roots: dict[str, Any] | None = None
                  ) -> set[str]:
    try:
        validateConfig(config, roots or {}, ENGINES)
    except BackupRemoteError as error:
        return set(error.details["fields"])
    return set()


def firebird(database: str) -> DatabaseConfigInput:
    return DatabaseConfigInput(name="fb", engine="firebird", database=database,
                               **SERVER_FIELDS["firebird"])


class DatabaseNameTests(SynchronousTestCase):
    def test_firebirdNamesCannotStartLikeAnOption(self) -> None:
        for database in ("-z", "-user=SYSDBA", ".", "..", ".hidden.fdb", "../etc/x.fdb",
                         ":x", "/srv/fb/../../etc/passwd", "/srv/..", "C:../x.fdb",
                         "/..:", "/srv/..:x.fdb",
                         "a\nb", "a\x00b", "x" * 256):
            self.assertIn("database", refusedFields(firebird(database)), repr(database))

    def test_firebirdNamesStillAccepted(self) -> None:
        for database in ("shop", "/srv/fb/shop.fdb", "C:/data/shop.fdb", "$alias",
                         "_x", "/srv/fb/my shop.fdb", "/srv/fb/a..b.fdb", "/srv/fb/.x/a.fdb",
                         "x" * 255):
            self.assertEqual(refusedFields(firebird(database)), set(), database)

    @settings(max_examples=300, deadline=None)
    @given(engine=st.sampled_from(sorted(SERVER_FIELDS)), database=tricky)
    def test_sameRulesForEveryEngine(self, engine: str, database: str) -> None:
        """
        Whatever the engine, an accepted database name does not start with
        "." or "-", holds no control character and no ".." component.
        """
        config = DatabaseConfigInput(name="db", engine=engine, database=database,
                                     **SERVER_FIELDS[engine])
        if "database" not in refusedFields(config):
            self.assertFalse(database.startswith((".", "-", ":")), database)
            self.assertIsNone(re.search(r"[\x00-\x1f\x7f]", database), database)
            self.assertNotIn("..", re.split(r"[/:]", database), database)
            self.assertTrue(1 <= len(database) <= 255)


class PathTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.roots = {"sqlite": (self.root,), "firebird": (self.root,)}

    def config(self, engine: str, path: str) -> DatabaseConfigInput:
        return DatabaseConfigInput(name="file", engine=engine, path=path)

    def test_controlCharactersRefused(self) -> None:
        for engine in ("sqlite", "firebird"):
            for bad in ("a\nb.db", "a\rb.db", "a\tb.db", "\x1b[2Jx.db", "a\x7fb.db"):
                path = self.root.child("x").path + "/" + bad
                self.assertEqual(refusedFields(self.config(engine, path), self.roots),
                                 {"path"}, repr(path))

    def test_lengthLimited(self) -> None:
        base = self.root.path + "/"
        fits = base + "d/" * ((MAX_PATH - len(base) - 8) // 2) + "x.db"
        self.assertLessEqual(len(fits), MAX_PATH)
        for engine in ("sqlite", "firebird"):
            self.assertEqual(refusedFields(self.config(engine, fits), self.roots), set())
            tooLong = base + "d/" * (MAX_PATH // 2) + "x.db"
            self.assertEqual(refusedFields(self.config(engine, tooLong), self.roots), {"path"})
            error = self.assertRaises(BackupRemoteError, validateConfig,
                                      self.config(engine, tooLong), self.roots, ENGINES)
            self.assertIn(f"1 to {MAX_PATH} characters", error.details["fields"]["path"])
            self.assertNotIn(tooLong, error.message)

    @settings(max_examples=200, deadline=None)
    @given(engine=st.sampled_from(["sqlite", "firebird"]), tail=tricky)
    def test_acceptedPathsAreClean(self, engine: str, tail: str) -> None:
        path = self.root.path + "/" + tail
        if "path" not in refusedFields(self.config(engine, path), self.roots):
            self.assertIsNone(re.search(r"[\x00-\x1f\x7f]", path), repr(path))
            self.assertLessEqual(len(path), MAX_PATH)
