"""
The README's commands, run as written.

"Restoring": each engine's lines run in bash (``set -euo pipefail``)
against a real server, on an artifact made by the real pipeline under the
README's own file name; the restored copy must hold the source's rows.
Only the connection travels outside the lines, as the README says it
does: ``PG*`` variables for PostgreSQL, a ``~/.my.cnf`` for MariaDB; and
the Firebird line's folder is a temp folder.

The one-machine tip: both daemons started with the README's twistd lines
from one folder stay up (without their ``--pidfile`` the second refuses to
start).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.cli.verify import verifyFile
from backupremote.server.engines.base import Target
from tests.databases import servers
from tests.databases.servers import TABLE, _baseEnv, checkProcess
from tests.integration.test_daemons import ProgramTestCase, program
from tests.server.pipeline.helpers import makeRunDir, runPipeline

README = FilePath(__file__).parent().parent().sibling("README.md")
BASE_NAME = "shop-20261129T031500Z"
FIREBIRD_FOLDER = "/var/lib/firebird/3.0/data/"

POSTGRESQL_ROWS = (f"SELECT count(*) || ' ' || md5(string_agg(id || ':' || name, ',' "
                   f"ORDER BY id)) FROM {TABLE}")
MARIADB_ROWS = (f"SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, ':', name ORDER BY id "
                f"SEPARATOR ','))) FROM {TABLE};")
FIREBIRD_ROWS = f"SELECT id, name FROM {TABLE} ORDER BY id;\n"


def readmeSection(heading: str) -> str:
    text = README.getContent().decode("utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if match is None:
        raise AssertionError(f"README has no ## {heading}")
    return match.group(1)


def codeBlocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)


def restoreLines(engine: str) -> str:
    """The README's restore lines under the comment that starts with C{engine}."""
    (block,) = codeBlocks(readmeSection("Restoring"))
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in block.splitlines():
        if line.startswith("# "):
            current = groups.setdefault(line[2:], [])
        elif line.strip() and current is not None:
            current.append(line)
    found = [lines for title, lines in groups.items() if title.startswith(engine)]
    if len(found) != 1:
        raise AssertionError(f"README restore block: {len(found)} sections for {engine!r}")
    return "\n".join(found[0])


class RestoreCommandsTests(TestCase):
    """The README's restore lines restore every engine's artifact."""

    async def artifact(self, engine: str, target: Target, **options: Any) -> FilePath:
        """The real pipeline's zstd artifact, named as the README names it, in a work folder."""
        made = await runPipeline(engine, target, makeRunDir(self), baseName=BASE_NAME,
                                 compression="zstd", verification="full", **options)
        self.work = FilePath(tempfile.mkdtemp(prefix="br-readme-"))
        self.addCleanup(shutil.rmtree, self.work.path, True)
        copy = self.work.child(made.name)
        made.path.copyTo(copy)
        verdict = verifyFile(copy.path, made.digest, made.sizeBytes)  # the README's first step
        self.assertTrue(verdict.ok, verdict)
        self.assertEqual([c.name for c in verdict.checks],
                         ["size", "sha256", "decompression", "format"])
        return copy

    async def runLines(self, engine: str, artifact: FilePath, env: dict[str, str],
                       replace: dict[str, str] | None = None) -> str:
        lines = restoreLines(engine)
        self.assertIn(artifact.basename(), lines)
        for old, new in (replace or {}).items():
            self.assertIn(old, lines)
            lines = lines.replace(old, new)
        return await checkProcess(["bash", "-c", "set -euo pipefail\n" + lines], env,
                                  path=self.work.path)

    async def test_postgresqlCustom(self) -> None:
        await self.postgresql("PostgreSQL, custom", "custom")

    async def test_postgresqlPlain(self) -> None:
        await self.postgresql("PostgreSQL, plain", "plain")

    async def postgresql(self, engine: str, format: str) -> None:
        server = await servers.startPostgreSQL(self)
        expected = await server.sql(POSTGRESQL_ROWS, database=server.database)
        artifact = await self.artifact("postgresql", Target(
            engine="postgresql", host=server.host, port=server.port, database=server.database,
            user=server.user, password=server.password), format=format)
        await self.runLines(engine, artifact, _baseEnv(
            PGHOST=server.host, PGPORT=str(server.port), PGUSER=server.superuser,
            PGPASSWORD=server.superuserPassword, PGDATABASE="postgres"))
        self.assertEqual(await server.sql(POSTGRESQL_ROWS, database="shop_restored"), expected)

    async def test_mariadb(self) -> None:
        server = await servers.startMariaDB(self)
        expected = await server.sql(MARIADB_ROWS, database=server.database)
        artifact = await self.artifact("mariadb", Target(
            engine="mariadb", host=server.host, port=server.port, database=server.database,
            user=server.user, password=server.password))
        home = self.work.child("home")
        home.makedirs()
        shutil.copyfile(server.optionsFile(server.superuser, server.superuserPassword),
                        home.child(".my.cnf").path)
        await self.runLines("MariaDB", artifact, _baseEnv(HOME=home.path))
        self.assertEqual(await server.sql(MARIADB_ROWS, database="shop_restored"), expected)

    async def test_sqlite(self) -> None:
        database = await servers.startSQLite(self)
        artifact = await self.artifact("sqlite", Target(engine="sqlite", path=database.path))
        said = await self.runLines("SQLite", artifact, _baseEnv())
        self.assertEqual(said.strip(), "ok")
        self.assertEqual(_sqliteRows(self.work.child("shop_restored.sqlite3").path),
                         _sqliteRows(database.path))

    async def test_firebird(self) -> None:
        database = await servers.startFirebird(self)
        expected = await database.sql(FIREBIRD_ROWS)
        artifact = await self.artifact("firebird", Target(engine="firebird",
                                                          path=database.path))
        restored = self.work.child("data")
        restored.makedirs()
        await self.runLines("Firebird", artifact, _baseEnv(),
                            replace={FIREBIRD_FOLDER: restored.path + "/"})
        copy = restored.child("shop_restored.fdb").path
        self.assertEqual(await checkProcess(["isql-fb", "-q", "-b", "-user", "SYSDBA", copy],
                                            _baseEnv(), FIREBIRD_ROWS), expected)


def _sqliteRows(path: str) -> str:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(f"SELECT id, name FROM {TABLE} ORDER BY id").fetchall()
    finally:
        connection.close()
    assert rows, path
    return hashlib.sha256(repr(rows).encode()).hexdigest()


class OneMachineTests(ProgramTestCase):
    """The README's tip for both daemons on one machine."""

    def test_bothDaemonsFromOneFolder(self) -> None:
        (block,) = [b for b in codeBlocks(readmeSection("Five minutes: a server and a client "
                                                         "on two machines"))
                    if "backupremote-client" in b and b.lstrip().startswith("twistd")]
        commands = [line.split() for line in block.splitlines() if line.startswith("twistd")]
        self.assertEqual([c[1] for c in commands], ["--pidfile", "--pidfile"])
        self.setUpServerAndClient()
        configs = {"backupremote-server": "server/server.toml",
                   "backupremote-client": "client/client.toml"}
        daemons = []
        for argv in commands:
            self.assertEqual(argv[-2], "--config")
            argv[-1] = configs[next(a for a in argv if a in configs)]
            daemons.append(self.spawn([program("twistd"), *argv[1:]]))
        self.waitFor(lambda: self.folder.child("server.pid").exists()
                     and self.folder.child("client.pid").exists(), "both pid files")
        time.sleep(2)  # a twistd that refuses to start exits at once
        self.assertEqual([d.poll() for d in daemons], [None, None])
        done = self.cli("--config", "client/client.toml", "capabilities", "--json")
        self.assertEqual(json.loads(done.stdout)["apiVersions"], [1])

    def spawn(self, argv: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(argv, cwd=self.folder.path, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
            process.stdout.close()

        self.addCleanup(stop)
        return process
