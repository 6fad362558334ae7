"""
The PostgreSQL engine: validation, error classification, the choice of
C{pg_dump}, and connection tests against a real PostgreSQL server.
"""

from __future__ import annotations

import os
import shutil
import stat
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
    TOOL_TOO_OLD,
    BackupRemoteError,
)
from backupremote.server.engines import defaultEngines
from backupremote.server.engines.base import FieldProblems, IEngine, Target
from backupremote.server.engines.postgresql import (
    NO_PASSFILE,
    connectionArgs,
    dumpEnvironment,
    PostgreSQLEngine,
    majorOf,
    probeArgv,
    reasonFor,
)
from backupremote.server.machinery.toolfinder import Tool, ToolFinder, defaultToolPath
from tests.databases.servers import startPostgreSQL, wrongPassword, wrongPort

engine = PostgreSQLEngine()

SECRET = "s3cret-Pa$$word 'quoted' \"double\""


class FakeToolFinder:
    """A L{ToolFinder} twin: the tools it has are given, nothing is run."""

    def __init__(self, *tools: Tool) -> None:
        self._tools = list(tools)
        self.toolPath = ()

    def findAll(self, name: str) -> list[str]:
        return [tool.path for tool in self._tools if tool.name == name]

    def find(self, name: str) -> str | None:
        found = self.findAll(name)
        return found[0] if found else None

    async def version(self, path: str, flag: str = "--version") -> str:
        for tool in self._tools:
            if tool.path == path:
                return tool.version
        return "unknown"

    async def tool(self, name: str, flag: str = "--version") -> Tool | None:
        return next((tool for tool in self._tools if tool.name == name), None)

    async def tools(self, name: str, flag: str = "--version") -> list[Tool]:
        return [tool for tool in self._tools if tool.name == name]


def pgTools(*versions: str, restore: bool = True) -> list[Tool]:
    """pg_dump (and pg_restore) of each major in C{versions}, as Debian installs them."""
    found = []
    for version in versions:
        major = version.split(".")[0]
        folder = f"/usr/lib/postgresql/{major}/bin"
        found.append(Tool("pg_dump", f"{folder}/pg_dump",
                          f"pg_dump (PostgreSQL) {version} (Debian {version}-1)"))
        if restore:
            found.append(Tool("pg_restore", f"{folder}/pg_restore",
                              f"pg_restore (PostgreSQL) {version} (Debian {version}-1)"))
    return found


def config(**fields: Any) -> DatabaseConfigInput:
    values: dict[str, Any] = dict(name="app", engine="postgresql", host="db.example",
                                  port=5432, database="appdb", user="app", password=SECRET)
    values.update(fields)
    return DatabaseConfigInput(**values)


def problemsOf(cfg: DatabaseConfigInput) -> dict[str, str]:
    problems = FieldProblems()
    engine.validate(cfg, problems)
    return problems.fields


def target(**fields: Any) -> Target:
    values: dict[str, Any] = dict(engine="postgresql", host="127.0.0.1", port=5432,
                                  database="appdb", user="app", password=SECRET)
    values.update(fields)
    return Target(**values)


class InterfaceTests(SynchronousTestCase):
    def test_providesIEngine(self) -> None:
        self.assertTrue(verifyObject(IEngine, engine))

    def test_registered(self) -> None:
        self.assertIsInstance(defaultEngines()["postgresql"], PostgreSQLEngine)
        self.assertEqual((engine.name, engine.defaultPort), ("postgresql", 5432))
        self.assertEqual(set(engine.optionNames), {"sslmode", "connect_timeout"})


class ValidateTests(SynchronousTestCase):
    def test_valid(self) -> None:
        self.assertEqual(problemsOf(config(options={"sslmode": "verify-full",
                                                    "connect_timeout": "10"})), {})

    def test_required(self) -> None:
        found = problemsOf(config(host=None, database="", user=None))
        self.assertEqual(set(found), {"host", "database", "user"})
        self.assertIn("required", found["host"])

    def test_pathForbidden(self) -> None:
        self.assertIn("path", problemsOf(config(path="/srv/db.sqlite")))

    def test_sslmode(self) -> None:
        for mode in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"):
            self.assertEqual(problemsOf(config(options={"sslmode": mode})), {}, mode)
        found = problemsOf(config(options={"sslmode": "always"}))
        self.assertEqual(list(found), ["options.sslmode"])
        self.assertIn("verify-full", found["options.sslmode"])

    def test_connectTimeout(self) -> None:
        for good in ("1", "30", "300"):
            self.assertEqual(problemsOf(config(options={"connect_timeout": good})), {}, good)
        for bad in ("0", "301", "-5", "1.5", "", " 5", "ten", "+5", "0300"):
            self.assertEqual(list(problemsOf(config(options={"connect_timeout": bad}))),
                             ["options.connect_timeout"], bad)

    def test_unknownOption(self) -> None:
        found = problemsOf(config(options={"sslrootcert": "/etc/passwd", "sslmode": "require"}))
        self.assertEqual(list(found), ["options.sslrootcert"])
        self.assertIn("sslmode", found["options.sslrootcert"])

    def test_socketFolderRefused(self) -> None:
        for host in ("/var/run/postgresql", "@abstract", "db.example,/tmp"):
            self.assertIn("host", problemsOf(config(host=host)), host)
        self.assertEqual(problemsOf(config(host="::1")), {})

    def test_badPort(self) -> None:
        self.assertIn("port", problemsOf(config(port=70000)))

    def test_nulCharacter(self) -> None:
        self.assertIn("password", problemsOf(config(password="a\x00b")))


#: Real stderr of psql 15 (and older libpq), with the reason each must get.
STDERR_TABLE = [
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'password authentication failed for user "app"', DB_AUTH_FAILED),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: '
     'fe_sendauth: no password supplied', DB_AUTH_FAILED),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'role "nobody" does not exist', DB_AUTH_FAILED),
    ('psql: error: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
     '\tIs the server running on that host and accepting TCP/IP connections?',
     HOST_UNREACHABLE),
    ('psql: error: could not translate host name "no.such.host" to address: '
     'Name or service not known', HOST_UNREACHABLE),
    ('psql: error: connection to server at "10.255.255.1", port 5432 failed: '
     'timeout expired', HOST_UNREACHABLE),
    ('psql: error: connection to server at "192.0.2.1", port 5432 failed: '
     'Network is unreachable', HOST_UNREACHABLE),
    ('psql: could not connect to server: Connection refused\n\tIs the server running on '
     'host "localhost" (127.0.0.1) and accepting\n\tTCP/IP connections on port 5432?',
     HOST_UNREACHABLE),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'database "nosuchdb" does not exist', DATABASE_NOT_FOUND),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'permission denied for database "appdb"\nDETAIL:  User does not have CONNECT '
     'privilege.', PERMISSION_DENIED),
    ('ERROR:  permission denied for table items', PERMISSION_DENIED),
    ('pg_dump: error: query failed: ERROR:  permission denied for table secrets',
     PERMISSION_DENIED),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'no pg_hba.conf entry for host "127.0.0.1", user "app", database "appdb", no '
     'encryption', PERMISSION_DENIED),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  '
     'sorry, too many clients already', DB_ERROR),
    ('psql: error: connection to server at "127.0.0.1", port 5432 failed: server does '
     'not support SSL, but SSL was required', DB_ERROR),
]


class ClassifyTests(SynchronousTestCase):
    def test_table(self) -> None:
        for stderr, expected in STDERR_TABLE:
            self.assertEqual(reasonFor(stderr), expected, stderr)


class ArgvAndEnvironmentTests(SynchronousTestCase):
    def test_connectionArgs(self) -> None:
        self.assertEqual(connectionArgs(target(port=None)),
                         ["-h", "127.0.0.1", "-p", "5432", "-U", "app", "-d", "dbname='appdb'"])

    def test_databaseNameCannotCarryParameters(self) -> None:
        args = connectionArgs(target(database="x host=evil.example sslmode=disable"))
        self.assertEqual(args[-1], "dbname='x host=evil.example sslmode=disable'")
        args = connectionArgs(target(database="it's\\"))
        self.assertEqual(args[-1], "dbname='it\\'s\\\\'")

    def test_passwordNeverInArgv(self) -> None:
        argv = probeArgv("/usr/bin/psql", target())
        self.assertNotIn(SECRET, " ".join(argv))
        self.assertEqual(argv[0], "/usr/bin/psql")
        self.assertIn("ON_ERROR_STOP=1", argv)
        self.assertIn("-w", argv)  # never prompt

    def test_environment(self) -> None:
        env = dumpEnvironment(target(options={"sslmode": "require", "connect_timeout": "7"}))
        self.assertEqual(env["PGPASSWORD"], SECRET)
        self.assertEqual(env["PGSSLMODE"], "require")
        self.assertEqual(env["PGCONNECT_TIMEOUT"], "7")
        self.assertEqual(env["PGPASSFILE"], NO_PASSFILE)
        self.assertFalse(os.path.exists(NO_PASSFILE))
        self.assertNotIn("PGHOST", env)

    def test_environmentWithoutPassword(self) -> None:
        env = dumpEnvironment(target(password=None))
        self.assertNotIn("PGPASSWORD", env)
        self.assertNotIn("PGSSLMODE", env)

    def test_majorOf(self) -> None:
        self.assertEqual(majorOf("15.4 (Debian 15.4-1.pgdg120+1)"), (15,))
        self.assertEqual(majorOf("16beta2"), (16,))
        self.assertEqual(majorOf("9.6.24"), (9, 6))
        self.assertLess(majorOf("9.5.1"), majorOf("9.6.0"))
        self.assertLess(majorOf("9.6.24"), majorOf("10.1"))


class ChooseDumpToolTests(TestCase):
    async def test_exactMajor(self) -> None:
        tools = FakeToolFinder(*pgTools("16.2", "15.18", "14.11"))
        choice = await engine.chooseDumpTool(tools, "15.4 (Debian 15.4-1)")
        self.assertEqual((choice.name, choice.path, choice.version),
                         ("pg_dump", "/usr/lib/postgresql/15/bin/pg_dump", "15.18"))
        self.assertIn("pg_dump 15.18 for a PostgreSQL 15.4 server", choice.reason)
        self.assertIn("matches", choice.reason)

    async def test_onlyNewer(self) -> None:
        tools = FakeToolFinder(*pgTools("17.1", "16.2"))
        choice = await engine.chooseDumpTool(tools, "15.4")
        self.assertEqual(choice.path, "/usr/lib/postgresql/16/bin/pg_dump")
        self.assertIn("no pg_dump 15 is installed", choice.reason)

    async def test_onlyOlder(self) -> None:
        tools = FakeToolFinder(*pgTools("14.11", "13.2"))
        with self.assertRaises(BackupRemoteError) as caught:
            await engine.chooseDumpTool(tools, "15.4")
        self.assertEqual(caught.exception.code, TOOL_TOO_OLD)
        self.assertIn("15", caught.exception.message)
        self.assertIn("13.2, 14.11", caught.exception.message)

    async def test_none(self) -> None:
        with self.assertRaises(BackupRemoteError) as caught:
            await engine.chooseDumpTool(FakeToolFinder(), "15.4")
        self.assertEqual(caught.exception.code, TOOL_MISSING)
        self.assertIn("pg_dump", caught.exception.message)

    async def test_noRestore(self) -> None:
        tools = FakeToolFinder(*pgTools("15.18", restore=False))
        with self.assertRaises(BackupRemoteError) as caught:
            await engine.chooseDumpTool(tools, "15.4")
        self.assertEqual(caught.exception.code, TOOL_MISSING)
        self.assertIn("pg_restore", caught.exception.message)

    async def test_twoPartMajorsBefore10(self) -> None:
        tools = FakeToolFinder(*pgTools("9.5.25"))
        with self.assertRaises(BackupRemoteError) as caught:
            await engine.chooseDumpTool(tools, "9.6.24")
        self.assertEqual(caught.exception.code, TOOL_TOO_OLD)
        choice = await engine.chooseDumpTool(FakeToolFinder(*pgTools("10.23")), "9.6.24")
        self.assertEqual(choice.version, "10.23")

    async def test_unknownServerVersionTakesNewest(self) -> None:
        choice = await engine.chooseDumpTool(FakeToolFinder(*pgTools("14.1", "16.2")), None)
        self.assertEqual(choice.version, "16.2")
        self.assertIn("unknown", choice.reason)


def fakeProgram(folder: str, name: str, body: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


class ProbeWithFakeClientTests(TestCase):
    """C{probe} runs a stand-in C{psql} that records what it was given."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder, True)

    def finder(self, body: str) -> FakeToolFinder:
        path = fakeProgram(self.folder, "psql", body)
        return FakeToolFinder(Tool("psql", path, "psql (PostgreSQL) 15.18"))

    async def test_passwordOnlyInEnvironment(self) -> None:
        tools = self.finder(
            'printf "%s\\n" "$@" > "$(dirname "$0")/argv"\n'
            'env > "$(dirname "$0")/env"\n'
            'echo "psql: error: connection to server at \\"127.0.0.1\\", port 5432 failed: '
            'FATAL:  password authentication failed for user \\"app\\" ($PGPASSWORD)" >&2\n'
            "exit 2\n")
        result = await engine.probe(target(options={"sslmode": "require"}), tools, reactor, 10)
        self.assertEqual((result.ok, result.reason), (False, DB_AUTH_FAILED))
        self.assertNotIn(SECRET, result.message)
        self.assertIn("password authentication failed", result.message)
        self.assertIn("***", result.message)
        with open(os.path.join(self.folder, "argv")) as f:
            argv = f.read()
        self.assertNotIn(SECRET, argv)
        self.assertIn("dbname='appdb'", argv)
        with open(os.path.join(self.folder, "env")) as f:
            env = f.read().splitlines()
        self.assertIn("PGPASSWORD=" + SECRET, env)
        self.assertIn("PGSSLMODE=require", env)
        self.assertIn("PGPASSFILE=" + NO_PASSFILE, env)
        self.assertEqual(result.tool, "psql 15.18")
        self.assertGreater(result.latencyMs, 0)

    async def test_success(self) -> None:
        tools = self.finder(
            "printf '15.4 (Debian 15.4-1)\\000PostgreSQL 15.4 (Debian 15.4-1) on x86_64, "
            "compiled by gcc, 64-bit\\0007654321\\n'\n")
        result = await engine.probe(target(), tools, reactor, 10)
        self.assertTrue(result.ok, result)
        self.assertEqual((result.serverVersion, result.sizeBytes),
                         ("15.4 (Debian 15.4-1)", 7654321))
        self.assertIsNone(result.reason)
        self.assertIn("PostgreSQL 15.4", result.message)

    async def test_garbledAnswer(self) -> None:
        result = await engine.probe(target(), self.finder("echo hello\n"), reactor, 10)
        self.assertEqual((result.ok, result.reason), (False, DB_ERROR))

    async def test_timeout(self) -> None:
        result = await engine.probe(target(), self.finder("exec sleep 30\n"), reactor, 0.5)
        self.assertEqual((result.ok, result.reason), (False, TIMEOUT))
        self.assertLess(result.latencyMs, 10000)

    async def test_toolMissing(self) -> None:
        result = await engine.probe(target(), FakeToolFinder(), reactor, 10)
        self.assertEqual((result.ok, result.reason), (False, TOOL_MISSING))
        self.assertIn("psql", result.message)


class RealPostgreSQLTests(TestCase):
    """Against a real PostgreSQL 15 on 127.0.0.1."""

    timeout = 180

    async def setUpServer(self) -> Any:
        self.server = await startPostgreSQL(self)
        self.tools = ToolFinder(reactor, defaultToolPath())
        return self.server

    def target(self, **changes: Any) -> Target:
        values: dict[str, Any] = dict(
            engine="postgresql", host=self.server.host, port=self.server.port,
            database=self.server.database, user=self.server.user,
            password=self.server.password)
        values.update(changes)
        return Target(**values)

    async def test_connectionTests(self) -> None:
        """Success, then each way of failing, against one server."""
        await self.setUpServer()
        result = await engine.probe(self.target(), self.tools, reactor, 30)
        self.assertTrue(result.ok, result)
        self.assertTrue(result.serverVersion.startswith("15"), result.serverVersion)
        self.assertGreater(result.sizeBytes, 0)
        self.assertGreater(result.latencyMs, 0)
        self.assertTrue(result.tool.startswith("psql 15"), result.tool)

        bad = wrongPassword(self.server.password)
        result = await engine.probe(self.target(password=bad), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, DB_AUTH_FAILED), result)
        self.assertNotIn(bad, result.message)
        self.assertNotIn(self.server.password, result.message)

        result = await engine.probe(self.target(password=None), self.tools, reactor, 30)
        self.assertEqual(result.reason, DB_AUTH_FAILED, result)

        result = await engine.probe(self.target(user="nobody"), self.tools, reactor, 30)
        self.assertEqual(result.reason, DB_AUTH_FAILED, result)

        result = await engine.probe(self.target(port=wrongPort()), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, HOST_UNREACHABLE), result)

        result = await engine.probe(self.target(database="nosuchdb"), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, DATABASE_NOT_FOUND), result)
        self.assertIn("nosuchdb", result.message)

        empty = tempfile.mkdtemp()
        self.addCleanup(os.rmdir, empty)
        result = await engine.probe(self.target(), ToolFinder(reactor, [empty]), reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, TOOL_MISSING), result)

    async def test_permissionDenied(self) -> None:
        await self.setUpServer()
        await self.server.sql("CREATE DATABASE closed; REVOKE CONNECT ON DATABASE closed FROM PUBLIC;")
        result = await engine.probe(self.target(database="closed"), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, PERMISSION_DENIED), result)

    async def test_awkwardNamesAndPassword(self) -> None:
        """A database name with '=' and quotes, and a password full of specials."""
        await self.setUpServer()
        password = "p\"a\\s's#w o=rd;$(x)"
        sqlPassword = password.replace("'", "''")
        await self.server.sql(
            f"CREATE ROLE odd LOGIN PASSWORD '{sqlPassword}';\n"
            "CREATE DATABASE \"x host=nowhere.invalid 'q'\" OWNER odd;\n")
        result = await engine.probe(
            self.target(user="odd", password=password,
                        database="x host=nowhere.invalid 'q'"), self.tools, reactor, 30)
        self.assertTrue(result.ok, result)

    async def test_options(self) -> None:
        await self.setUpServer()
        result = await engine.probe(
            self.target(options={"sslmode": "disable", "connect_timeout": "5"}),
            self.tools, reactor, 30)
        self.assertTrue(result.ok, result)
        result = await engine.probe(
            self.target(options={"sslmode": "require"}), self.tools, reactor, 30)
        self.assertEqual((result.ok, result.reason), (False, DB_ERROR), result)
        self.assertIn("SSL", result.message)

    async def test_chooseDumpToolForRealServer(self) -> None:
        await self.setUpServer()
        probe = await engine.probe(self.target(), self.tools, reactor, 30)
        choice = await engine.chooseDumpTool(self.tools, probe.serverVersion)
        # /usr/bin/pg_dump is Debian's pg_wrapper, whose choice of version
        # can change at run time: the real binary of the same major wins.
        self.assertEqual(choice.path, "/usr/lib/postgresql/15/bin/pg_dump")
        self.assertTrue(choice.version.startswith("15."), choice)
        self.assertIn(f"pg_dump {choice.version} for a PostgreSQL 15", choice.reason)
        self.assertNotIn("pg_wrapper", choice.reason)
        self.assertTrue(stat.S_IMODE(os.stat(choice.path).st_mode) & 0o111)
