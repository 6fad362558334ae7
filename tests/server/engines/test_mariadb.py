"""
The MariaDB engine: validation, error classification, the option file that
carries the password, the choice of the dump tool, and connection tests
against a real MariaDB server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.errors import (
    DATABASE_NOT_FOUND,
    DB_AUTH_FAILED,
    DB_ERROR,
    HOST_UNREACHABLE,
    PERMISSION_DENIED,
    TIMEOUT,
    TOOL_MISSING,
    BackupRemoteError,
)
from backupremote.server.engines import defaultEngines
from backupremote.server.engines.base import FieldProblems, IEngine, Target
from backupremote.server.engines.mariadb import (
    clientEnvironment,
    connectionArgs,
    distribVersion,
    MariaDBEngine,
    optionFileText,
    optionsFile,
    optionValue,
    probeArgv,
    reasonFor,
)
from backupremote.server.machinery.toolfinder import Tool, ToolFinder, defaultToolPath
from tests.databases.servers import startMariaDB, wrongPassword, wrongPort
from tests.server.engines.test_postgresql import FakeToolFinder, fakeProgram

engine = MariaDBEngine()

SECRET = "s3cret \"quoted\" back\\slash #not-a-comment 'single'"

MARIADB_DUMP_VERSION = ("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for "
                        "debian-linux-gnu (x86_64)")


def config(**fields: Any) -> DatabaseConfigInput:
    values: dict[str, Any] = dict(name="shop", engine="mariadb", host="db.example",
                                  port=3306, database="shop", user="app", password=SECRET)
    values.update(fields)
    return DatabaseConfigInput(**values)


def problemsOf(cfg: DatabaseConfigInput) -> dict[str, str]:
    problems = FieldProblems()
    engine.validate(cfg, problems)
    return problems.fields


def target(**fields: Any) -> Target:
    values: dict[str, Any] = dict(engine="mariadb", host="127.0.0.1", port=3306,
                                  database="shop", user="app", password=SECRET)
    values.update(fields)
    return Target(**values)


class InterfaceTests(SynchronousTestCase):
    def test_providesIEngine(self) -> None:
        self.assertTrue(verifyObject(IEngine, engine))

    def test_registered(self) -> None:
        self.assertIsInstance(defaultEngines()["mariadb"], MariaDBEngine)
        self.assertEqual((engine.name, engine.defaultPort), ("mariadb", 3306))
        self.assertEqual(set(engine.optionNames), {"ssl", "connect_timeout"})


class ValidateTests(SynchronousTestCase):
    def test_valid(self) -> None:
        self.assertEqual(problemsOf(config(options={"ssl": "true", "connect_timeout": "5"})), {})
        self.assertEqual(problemsOf(config(options={"ssl": "false"})), {})

    def test_required(self) -> None:
        self.assertEqual(set(problemsOf(config(host="", database=None, user=""))),
                         {"host", "database", "user"})

    def test_pathForbidden(self) -> None:
        self.assertIn("path", problemsOf(config(path="/var/lib/mysql")))

    def test_ssl(self) -> None:
        for bad in ("yes", "True", "1", ""):
            self.assertEqual(list(problemsOf(config(options={"ssl": bad}))), ["options.ssl"], bad)

    def test_connectTimeout(self) -> None:
        for bad in ("0", "301", "x", "2.5"):
            self.assertEqual(list(problemsOf(config(options={"connect_timeout": bad}))),
                             ["options.connect_timeout"], bad)

    def test_unknownOption(self) -> None:
        found = problemsOf(config(options={"init-command": "DROP DATABASE shop"}))
        self.assertEqual(list(found), ["options.init-command"])

    def test_socketRefused(self) -> None:
        self.assertIn("host", problemsOf(config(host="/run/mysqld/mysqld.sock")))


#: Real stderr of the mariadb client 10.11 (and mysql), with the reason each must get.
STDERR_TABLE = [
    ("ERROR 1045 (28000): Access denied for user 'app'@'localhost' (using password: YES)",
     DB_AUTH_FAILED),
    ("ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' (using password: NO)",
     DB_AUTH_FAILED),
    ("ERROR 1698 (28000): Access denied for user 'root'@'localhost'", DB_AUTH_FAILED),
    ("ERROR 1044 (42000): Access denied for user 'app'@'127.0.0.1' to database 'other'",
     PERMISSION_DENIED),
    ("mariadb-dump: Got error: 1044: \"Access denied for user 'app'@'%' to database 'x'\" "
     "when selecting the database", PERMISSION_DENIED),
    ("ERROR 1049 (42000): Unknown database 'nosuchdb'", DATABASE_NOT_FOUND),
    ("mysqldump: Got error: 1049: \"Unknown database 'nosuchdb'\" when selecting the database",
     DATABASE_NOT_FOUND),
    ("ERROR 2002 (HY000): Can't connect to local server through socket "
     "'/run/mysqld/mysqld.sock' (2)", HOST_UNREACHABLE),
    ("ERROR 2002 (HY000): Can't connect to server on '127.0.0.1' (115)", HOST_UNREACHABLE),
    ("ERROR 2003 (HY000): Can't connect to MySQL server on '127.0.0.1' (111)",
     HOST_UNREACHABLE),
    ("ERROR 2005 (HY000): Unknown server host 'no.such.host' (-2)", HOST_UNREACHABLE),
    ("ERROR 2005 (HY000): Unknown MySQL server host 'no.such.host' (-2)", HOST_UNREACHABLE),
    ("ERROR 1142 (42000): SELECT command denied to user 'app'@'127.0.0.1' for table "
     "`shop`.`secrets`", PERMISSION_DENIED),
    ("ERROR 1040 (HY000): Too many connections", DB_ERROR),
    ("ERROR 2026 (HY000): TLS/SSL error: self-signed certificate in certificate chain",
     DB_ERROR),
]


class ClassifyTests(SynchronousTestCase):
    def test_table(self) -> None:
        for stderr, expected in STDERR_TABLE:
            self.assertEqual(reasonFor(stderr), expected, stderr)


class OptionFileTests(SynchronousTestCase):
    def test_escaping(self) -> None:
        self.assertEqual(optionValue('a"b\\c'), '"a\\"b\\\\c"')
        self.assertEqual(optionValue("line\nbreak\r\t"), '"line\\nbreak\\r\\t"')
        self.assertEqual(optionValue(" # x "), '" # x "')

    def test_text(self) -> None:
        self.assertEqual(optionFileText("pw"), '[client]\npassword="pw"\n')
        self.assertEqual(optionFileText(None), "[client]\n")

    def test_privateAndRemoved(self) -> None:
        with optionsFile(SECRET) as path:
            folder = os.path.dirname(path)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
            self.assertEqual(os.stat(folder).st_mode & 0o777, 0o700)
            with open(path) as f:
                self.assertEqual(f.read(), optionFileText(SECRET))
            self.assertEqual(clientEnvironment(path)["HOME"], folder)
        self.assertFalse(os.path.exists(folder))

    def test_removedOnError(self) -> None:
        with self.assertRaises(RuntimeError):
            with optionsFile(SECRET) as path:
                raise RuntimeError("child failed")
        self.assertFalse(os.path.exists(os.path.dirname(path)))


class ArgvTests(SynchronousTestCase):
    def test_defaultsFileFirstAndNoPassword(self) -> None:
        argv = probeArgv("/usr/bin/mariadb", "/tmp/x/client.cnf",
                         target(options={"ssl": "true", "connect_timeout": "9"}), 10)
        self.assertEqual(argv[:2], ["/usr/bin/mariadb", "--defaults-extra-file=/tmp/x/client.cnf"])
        self.assertNotIn(SECRET, " ".join(argv))
        self.assertNotIn("password", " ".join(argv))
        for expected in ("--protocol=TCP", "--host=127.0.0.1", "--port=3306", "--user=app",
                         "--ssl", "--connect-timeout=9", "--database=shop", "-N", "-B"):
            self.assertIn(expected, argv)

    def test_connectionArgs(self) -> None:
        self.assertEqual(connectionArgs(target(port=None, options={"ssl": "false"})),
                         ["--protocol=TCP", "--host=127.0.0.1", "--port=3306", "--user=app",
                          "--skip-ssl"])

    def test_distribVersion(self) -> None:
        self.assertEqual(distribVersion(MARIADB_DUMP_VERSION), "10.11.19-MariaDB")
        self.assertEqual(distribVersion("mysqldump  Ver 8.0.36 for Linux on x86_64"), "8.0.36")


class ChooseDumpToolTests(TestCase):
    async def test_mariadbDump(self) -> None:
        tools = FakeToolFinder(Tool("mysqldump", "/usr/bin/mysqldump", "mysqldump Ver 8.0.1"),
                               Tool("mariadb-dump", "/usr/bin/mariadb-dump", MARIADB_DUMP_VERSION))
        choice = await engine.chooseDumpTool(tools, "10.11.6-MariaDB-0+deb12u1")
        self.assertEqual((choice.name, choice.path, choice.version),
                         ("mariadb-dump", "/usr/bin/mariadb-dump", "10.11.19-MariaDB"))
        self.assertIn("mariadb-dump 10.11.19-MariaDB", choice.reason)

    async def test_mysqldumpFallback(self) -> None:
        tools = FakeToolFinder(Tool("mysqldump", "/usr/bin/mysqldump",
                                    "mysqldump  Ver 8.0.36 for Linux on x86_64"))
        choice = await engine.chooseDumpTool(tools, "8.0.36")
        self.assertEqual((choice.name, choice.version), ("mysqldump", "8.0.36"))

    async def test_none(self) -> None:
        with self.assertRaises(BackupRemoteError) as caught:
            await engine.chooseDumpTool(FakeToolFinder(), "10.11.6-MariaDB")
        self.assertEqual(caught.exception.code, TOOL_MISSING)
        self.assertIn("mariadb-dump", caught.exception.message)


RECORD = (
    'here="$(dirname "$0")"\n'
    'printf "%s\\n" "$@" > "$here/argv"\n'
    'file="${1#--defaults-extra-file=}"\n'
    'echo "$file" > "$here/file"\n'
    'stat -c %a "$file" > "$here/mode"\n'
    'stat -c %a "$(dirname "$file")" > "$here/foldermode"\n'
    'cp "$file" "$here/content"\n'
    'echo "$HOME" > "$here/home"\n'
)


class ProbeWithFakeClientTests(TestCase):
    """C{probe} runs a stand-in C{mariadb} that records what it was given."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder, True)

    def finder(self, body: str, name: str = "mariadb") -> FakeToolFinder:
        path = fakeProgram(self.folder, name, body)
        return FakeToolFinder(Tool(name, path, "mariadb  Ver 15.1 Distrib 10.11.19-MariaDB"))

    def recorded(self, name: str) -> str:
        with open(os.path.join(self.folder, name)) as f:
            return f.read()

    async def test_optionsFilePrivateAndRemovedOnFailure(self) -> None:
        tools = self.finder(RECORD + (
            "echo \"ERROR 1045 (28000): Access denied for user 'app'@'127.0.0.1' "
            "(using password: YES) $(cat \"$file\")\" >&2\n"
            "exit 1\n"))
        result = await engine.probe(target(), tools, reactor, 10)
        self.assertEqual((result.ok, result.reason), (False, DB_AUTH_FAILED), result)
        self.assertEqual(self.recorded("mode").strip(), "600")
        self.assertEqual(self.recorded("foldermode").strip(), "700")
        self.assertEqual(self.recorded("content"), optionFileText(SECRET))
        optionsPath = self.recorded("file").strip()
        self.assertFalse(os.path.exists(optionsPath))
        self.assertFalse(os.path.exists(os.path.dirname(optionsPath)))
        self.assertEqual(self.recorded("home").strip(), os.path.dirname(optionsPath))
        argv = self.recorded("argv")
        self.assertTrue(argv.startswith("--defaults-extra-file="))
        self.assertNotIn(SECRET, argv)
        self.assertNotIn(SECRET, result.message)
        self.assertIn("Access denied", result.message)
        self.assertEqual(result.tool, "mariadb 10.11.19-MariaDB")

    async def test_optionsFileRemovedOnTimeout(self) -> None:
        tools = self.finder(RECORD + "exec sleep 30\n")
        result = await engine.probe(target(), tools, reactor, 0.5)
        self.assertEqual((result.ok, result.reason), (False, TIMEOUT), result)
        self.assertFalse(os.path.exists(self.recorded("file").strip()))

    async def test_success(self) -> None:
        tools = self.finder("printf '10.11.6-MariaDB-0+deb12u1\\t4096\\t49152\\t16384\\n'\n",
                            name="mysql")
        result = await engine.probe(target(), tools, reactor, 10)
        self.assertTrue(result.ok, result)
        self.assertEqual((result.serverVersion, result.sizeBytes),
                         ("10.11.6-MariaDB-0+deb12u1", 4096 + 49152))
        self.assertTrue(result.tool.startswith("mysql "))

    async def test_toolMissing(self) -> None:
        result = await engine.probe(target(), FakeToolFinder(), reactor, 10)
        self.assertEqual((result.ok, result.reason), (False, TOOL_MISSING))
        self.assertIn("mariadb", result.message)


class RealMariaDBTests(TestCase):
    """Against a real MariaDB on 127.0.0.1."""

    timeout = 180

    async def setUpServer(self) -> Any:
        self.server = await startMariaDB(self)
        self.tools = ToolFinder(reactor, defaultToolPath())
        return self.server

    def target(self, **changes: Any) -> Target:
        values: dict[str, Any] = dict(
            engine="mariadb", host=self.server.host, port=self.server.port,
            database=self.server.database, user=self.server.user,
            password=self.server.password)
        values.update(changes)
        return Target(**values)

    async def test_connectionTests(self) -> None:
        """Success, then each way of failing, against one server."""
        await self.setUpServer()
        version = (await self.server.sql("SELECT version();")).strip()
        result = await engine.probe(self.target(), self.tools, reactor, 30)
        self.assertTrue(result.ok, result)
        self.assertEqual(result.serverVersion, version)
        self.assertTrue(result.serverVersion.startswith(version.split(".")[0] + "."))
        # without the PROCESS privilege, no size rather than stale statistics
        self.assertIsNone(result.sizeBytes)
        self.assertIn("PROCESS", result.message)
        self.assertGreater(result.latencyMs, 0)

        bad = wrongPassword(self.server.password)
        result = await engine.probe(self.target(password=bad), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, DB_AUTH_FAILED), result)
        self.assertNotIn(bad, result.message)

        result = await engine.probe(self.target(port=wrongPort()), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, HOST_UNREACHABLE), result)

        # A user with global rights learns that the database does not exist...
        result = await engine.probe(
            self.target(user=self.server.superuser, password=self.server.superuserPassword,
                        database="nosuchdb"), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, DATABASE_NOT_FOUND), result)
        self.assertIn("nosuchdb", result.message)
        # ...one without is told only that it may not use it (error 1044).
        result = await engine.probe(self.target(database="nosuchdb"), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, PERMISSION_DENIED), result)
        self.assertIn("does not exist", result.message)

        empty = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, empty)
        result = await engine.probe(self.target(), ToolFinder(reactor, [empty]), reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, TOOL_MISSING), result)

    async def test_sizeAfterABulkLoad(self) -> None:
        """
        Just after a bulk load, InnoDB's statistics still say the table is
        nearly empty; the size of the table files does not lag.
        """
        await self.setUpServer()
        await self.server.sql("CREATE TABLE bulk (id INT PRIMARY KEY AUTO_INCREMENT, "
                              "filler TEXT) ENGINE=InnoDB; INSERT INTO bulk (filler) "
                              "SELECT REPEAT('x', 1000) FROM seq_1_to_20000;",
                              database=self.server.database)
        result = await engine.probe(self.target(), self.tools, reactor, 30)
        self.assertTrue(result.ok, result)
        self.assertIsNone(result.sizeBytes)
        await self.server.sql(f"GRANT PROCESS ON *.* TO `{self.server.user}`@`127.0.0.1`;")
        result = await engine.probe(self.target(), self.tools, reactor, 30)
        self.assertTrue(result.ok, result)
        self.assertGreater(result.sizeBytes, 20_000_000)
        self.assertIn("table files", result.message)

    async def test_awkwardPassword(self) -> None:
        """The option-file escaping survives the real client's parser."""
        await self.setUpServer()
        sqlPassword = SECRET.replace("\\", "\\\\").replace("'", "''")
        await self.server.sql(
            f"CREATE USER 'odd'@'127.0.0.1' IDENTIFIED BY '{sqlPassword}';\n"
            f"GRANT SELECT ON {self.server.database}.* TO 'odd'@'127.0.0.1';\n")
        result = await engine.probe(self.target(user="odd", password=SECRET),
                                    self.tools, reactor, 30)
        self.assertTrue(result.ok, result)
        result = await engine.probe(self.target(user="odd", password=SECRET[:-1]),
                                    self.tools, reactor, 30)
        self.assertEqual(result.reason, DB_AUTH_FAILED, result)

    async def test_optionsAndLocalhost(self) -> None:
        """C{localhost} still means TCP; C{ssl} and C{connect_timeout} are accepted."""
        await self.setUpServer()
        result = await engine.probe(
            self.target(host="localhost", options={"ssl": "false", "connect_timeout": "5"}),
            self.tools, reactor, 30)
        self.assertTrue(result.ok, result)

    async def test_chooseDumpTool(self) -> None:
        await self.setUpServer()
        probe = await engine.probe(self.target(), self.tools, reactor, 30)
        choice = await engine.chooseDumpTool(self.tools, probe.serverVersion)
        self.assertEqual(choice.name, "mariadb-dump")
        self.assertTrue(os.path.isabs(choice.path))
        self.assertIn("MariaDB", choice.version)
        self.assertIn(probe.serverVersion, choice.reason)
