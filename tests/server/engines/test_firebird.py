"""
The Firebird engine: validation, connection strings and environments (the
password only ever in C{ISC_PASSWORD}), error classification with real isql
texts, and probes of a real embedded database file and a real private
Firebird server (L{tests.databases.servers}).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
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
from backupremote.server.engines.firebird import (
    EMBEDDED_USER,
    PROBE_SQL,
    classifyFirebirdError,
    connectionString,
    FirebirdEngine,
    errorMessage,
    firebirdEnvironment,
    isFirebirdTool,
    isqlArgv,
    toolVersion,
)
from backupremote.server.machinery.toolfinder import ToolFinder, defaultToolPath
from tests.databases.servers import (
    isAlive,
    startFirebird,
    startFirebirdServer,
    wrongPassword,
    wrongPort,
)

engine = FirebirdEngine()

SECRET = "s3cret-Pa55word"


def writeScript(path: str, text: str) -> None:
    FilePath(path).setContent(text.encode())
    os.chmod(path, 0o755)


def problemsOf(**fields: Any) -> dict[str, str]:
    problems = FieldProblems()
    engine.validate(DatabaseConfigInput(name="db", engine="firebird", **fields), problems)
    return problems.fields


def serverTarget(**changes: Any) -> Target:
    fields: dict[str, Any] = {"host": "db.example", "port": 3051,
                              "database": "/srv/fb/app.fdb", "user": "APP", "password": SECRET}
    fields.update(changes)
    return Target("firebird", **fields)


class InterfaceTests(TestCase):
    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IEngine, engine))
        self.assertIsInstance(defaultEngines()["firebird"], FirebirdEngine)
        self.assertEqual(engine.defaultPort, 3050)
        self.assertEqual(engine.optionNames, frozenset({"charset", "role"}))


class ValidateTests(TestCase):
    def test_embedded(self) -> None:
        self.assertEqual(problemsOf(path="/srv/fb/app.fdb"), {})
        self.assertEqual(problemsOf(path="/srv/fb/app.fdb", user="OWNER"), {})

    def test_embeddedRefusesPasswordAndPort(self) -> None:
        problems = problemsOf(path="/srv/fb/app.fdb", password="x", port=3050)
        self.assertEqual(sorted(problems), ["password", "port"])

    def test_server(self) -> None:
        self.assertEqual(problemsOf(host="db.example", database="app", user="SYSDBA",
                                    password="pw"), {})
        self.assertEqual(problemsOf(host="db.example", port=3051, database="/srv/app.fdb",
                                    user="APP"), {})

    def test_serverNeedsHostDatabaseUser(self) -> None:
        self.assertEqual(sorted(problemsOf(host="db.example")), ["database", "user"])
        self.assertEqual(sorted(problemsOf(database="app", user="u")), ["host"])

    def test_exactlyOneForm(self) -> None:
        problems = problemsOf(path="/srv/a.fdb", host="db.example", database="a", user="u")
        self.assertEqual(sorted(problems), ["database", "host", "path"])
        self.assertIn("not both", problems["path"])
        self.assertEqual(list(problemsOf()), ["path"])

    def test_options(self) -> None:
        self.assertEqual(problemsOf(path="/a.fdb", options={"charset": "UTF8",
                                                             "role": "RDB$ADMIN"}), {})
        problems = problemsOf(path="/a.fdb", options={"charset": "UTF8; drop",
                                                      "role": "-bad"})
        self.assertEqual(sorted(problems), ["options.charset", "options.role"])


class ConnectionTests(TestCase):
    def test_connectionStrings(self) -> None:
        self.assertEqual(connectionString(Target("firebird", path="/srv/fb/a.fdb")),
                         "/srv/fb/a.fdb")
        self.assertEqual(connectionString(serverTarget()), "db.example/3051:/srv/fb/app.fdb")
        self.assertEqual(connectionString(serverTarget(port=None, database="employee")),
                         "db.example/3050:employee")
        self.assertEqual(connectionString(serverTarget(host="::1")), "[::1]/3051:/srv/fb/app.fdb")
        self.assertRaises(ValueError, connectionString, Target("firebird", path="rel.fdb"))

    def test_serverEnvironment(self) -> None:
        env = firebirdEnvironment(serverTarget(), inherited={"FIREBIRD_LOCK": "/run/fb",
                                                             "ISC_PASSWORD": "server's",
                                                             "SECRET_KEY": "x"})
        self.assertEqual(env["ISC_USER"], "APP")
        self.assertEqual(env["ISC_PASSWORD"], SECRET)
        self.assertEqual(env["FIREBIRD_LOCK"], "/run/fb")
        self.assertNotIn("SECRET_KEY", env)
        self.assertEqual(env["PATH"], "/usr/local/bin:/usr/bin:/bin")

    def test_embeddedEnvironment(self) -> None:
        env = firebirdEnvironment(Target("firebird", path="/a.fdb", password="ignored"),
                                  inherited={})
        self.assertEqual(env["ISC_USER"], EMBEDDED_USER)
        self.assertNotIn("ISC_PASSWORD", env)
        self.assertNotIn("FIREBIRD_LOCK", env)

    def test_passwordNeverOnArgv(self) -> None:
        target = serverTarget(options={"charset": "UTF8", "role": "READER"})
        argv = isqlArgv("/usr/bin/isql-fb", target)
        self.assertEqual(argv, ["/usr/bin/isql-fb", "-q", "-ch", "UTF8", "-r", "READER",
                                "db.example/3051:/srv/fb/app.fdb"])
        self.assertFalse(any(SECRET in part for part in argv))
        self.assertNotIn(SECRET.encode(), PROBE_SQL)

    def test_toolVersions(self) -> None:
        self.assertEqual(toolVersion("ISQL Version: LI-V3.0.11.33637 Firebird 3.0"),
                         "3.0.11.33637")
        self.assertEqual(toolVersion("gbak:gbak version LI-V3.0.11.33637 Firebird 3.0"),
                         "3.0.11.33637")
        self.assertEqual(toolVersion("gbak:gbak version WI-T5.0.0.1 Firebird 5.0"), "5.0.0.1")
        self.assertTrue(isFirebirdTool("ISQL Version: LI-V3.0.11.33637 Firebird 3.0"))
        self.assertFalse(isFirebirdTool("unixODBC 2.3.11"))


class ClassifyTests(TestCase):
    """Texts isql-fb 3.0.11 really wrote on stderr, each with its reason."""

    TABLE = (
        (("Statement failed, SQLSTATE = 28000\nYour user name and password are not defined. "
          "Ask your database administrator to set up a Firebird login.\n"), DB_AUTH_FAILED),
        (("Statement failed, SQLSTATE = 08006\nUnable to complete network request to host "
          '"127.0.0.1".\n-Failed to establish a connection.\n'), HOST_UNREACHABLE),
        (("Statement failed, SQLSTATE = 08006\nUnable to complete network request to host "
          '"nonexistent.invalid".\n-Failed to locate host machine.\n-The specified name was '
          "not found in the hosts file or Domain Name Services.\n"), HOST_UNREACHABLE),
        (('Statement failed, SQLSTATE = 08001\nI/O error during "open" operation for file '
          '"/tmp/fb/missing.fdb"\n-Error while trying to open file\n'
          "-No such file or directory\n"), DATABASE_NOT_FOUND),
        (('Statement failed, SQLSTATE = 08001\nI/O error during "open" operation for file '
          '"somealias"\n-Error while trying to open file\n-No such file or directory\n'),
         DATABASE_NOT_FOUND),
        (("Statement failed, SQLSTATE = HY000\nfile /tmp/fb/garbage.fdb is not a valid "
          "database\n"), DATABASE_NOT_FOUND),
        (("Statement failed, SQLSTATE = 08004\nfile /tmp/fb/garbage.fdb is not a valid "
          "database\n-IProvider::attachDatabase failed when loading mapping cache\n"),
         DATABASE_NOT_FOUND),
        (('Statement failed, SQLSTATE = 08001\nI/O error during "read" operation for file '
          '"/tmp/fb/notdb.fdb"\n-File size is less than expected\n'), DATABASE_NOT_FOUND),
        (('Statement failed, SQLSTATE = 08001\nI/O error during "read" operation for file '
          '"/tmp/fb"\n-Error while trying to read from file\n-Is a directory\n'),
         DATABASE_NOT_FOUND),
        (('Statement failed, SQLSTATE = 08001\nI/O error during "open" operation for file '
          '"/tmp/fb/priv.fdb"\n-Error while trying to open file\n-Permission denied\n'),
         PERMISSION_DENIED),
        (("Statement failed, SQLSTATE = 28000\nno permission for read-write access to "
          "database /tmp/fb/priv.fdb\n"), PERMISSION_DENIED),
        ("Statement failed, SQLSTATE = 40001\nlock time-out on wait transaction\n", DB_ERROR),
    )

    def test_table(self) -> None:
        for text, expected in self.TABLE:
            self.assertEqual(classifyFirebirdError(text), expected, text)

    def test_messageDropsNoiseAndSecret(self) -> None:
        text = ("Statement failed, SQLSTATE = 08006\nUnable to complete network request to "
                f'host "h".\n-Failed to establish a connection ({SECRET}).\n')
        message = errorMessage(text, serverTarget())
        self.assertNotIn("SQLSTATE", message)
        self.assertNotIn(SECRET, message)
        self.assertIn("Unable to complete network request", message)

    def test_messageHidesTheResolvedPath(self) -> None:
        text = ('Statement failed, SQLSTATE = 08001\nI/O error during "open" operation for file '
                '"/srv/real/app.fdb"\n-Error while trying to open file\n'
                '-No such file or directory\n')
        message = errorMessage(text, Target("firebird", path="/srv/real/app.fdb"))
        self.assertNotIn("/srv/real", message)
        self.assertIn("No such file or directory", message)


class ToolTests(TestCase):
    async def test_isqlMissing(self) -> None:
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        result = await engine.probe(Target("firebird", path="/x.fdb"),
                                    ToolFinder(reactor, [empty]), reactor, 10)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, TOOL_MISSING)

    async def test_gbakMissing(self) -> None:
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        error = await self.assertFailure(Deferred.fromCoroutine(
            engine.chooseDumpTool(ToolFinder(reactor, [empty]), "3.0.11")), BackupRemoteError)
        self.assertEqual(error.code, TOOL_MISSING)

    async def test_notFirebirdIsql(self) -> None:
        """A unixODBC C{isql} is not mistaken for Firebird's."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        writeScript(os.path.join(folder, "isql"), "#!/bin/sh\necho 'unixODBC 2.3.11'\n")
        result = await engine.probe(Target("firebird", path="/x.fdb"),
                                    ToolFinder(reactor, [folder]), reactor, 10)
        self.assertEqual(result.reason, TOOL_MISSING)

    async def test_gbak(self) -> None:
        choice = await engine.chooseDumpTool(ToolFinder(reactor, defaultToolPath()), "3.0.11")
        self.assertEqual(choice.name, "gbak")
        self.assertTrue(os.path.isabs(choice.path))
        self.assertTrue(choice.version.startswith("3.0."), choice)

    async def test_gbakTooOld(self) -> None:
        error = await self.assertFailure(Deferred.fromCoroutine(
            engine.chooseDumpTool(ToolFinder(reactor, defaultToolPath()), "5.0.1")),
            BackupRemoteError)
        self.assertEqual(error.code, TOOL_TOO_OLD)

    async def test_timeout(self) -> None:
        """A client that never answers: TIMEOUT, and its whole process group is killed."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        pidFile = os.path.join(folder, "sleeper.pid")
        writeScript(os.path.join(folder, "isql-fb"), (
            '#!/bin/sh\nif [ "$1" = -z ]; then echo "ISQL Version: LI-V3.0.11.1 '
            'Firebird 3.0"; exit 0; fi\n'
            f"sleep 30 & echo $! > {pidFile}\nwait\n"))
        result = await engine.probe(Target("firebird", path="/x.fdb"),
                                    ToolFinder(reactor, [folder]), reactor, 0.5)
        self.assertEqual(result.reason, TIMEOUT)
        self.assertIn("0.5 seconds", result.message)
        sleeper = int(FilePath(pidFile).getContent())
        for _ in range(100):
            if not isAlive(sleeper):
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertFalse(isAlive(sleeper))


class EmbeddedTests(TestCase):
    """A real database file, opened by isql-fb's embedded engine."""

    def tools(self) -> ToolFinder:
        return ToolFinder(reactor, defaultToolPath())

    async def test_success(self) -> None:
        database = await startFirebird(self)
        result = await engine.probe(Target("firebird", path=database.path), self.tools(),
                                    reactor, 30)
        self.assertTrue(result.ok, result)
        self.assertRegex(result.serverVersion, r"^3\.0\.\d+$")
        self.assertGreater(result.sizeBytes, 0)
        self.assertTrue(result.tool.startswith("isql-fb 3.0."), result.tool)
        self.assertGreater(result.latencyMs, 0)

    async def test_charsetAndRole(self) -> None:
        database = await startFirebird(self)
        target = Target("firebird", path=database.path,
                        options={"charset": "UTF8", "role": "RDB$ADMIN"})
        result = await engine.probe(target, self.tools(), reactor, 30)
        self.assertTrue(result.ok, result)

    async def test_missingFile(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        result = await engine.probe(Target("firebird", path=os.path.join(folder, "no.fdb")),
                                    self.tools(), reactor, 30)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)
        self.assertIn("No such file", result.message)
        self.assertNotIn(folder, result.message)
        self.assertEqual(os.listdir(folder), [])

    async def test_notADatabase(self) -> None:
        path = os.path.abspath(self.mktemp())
        FilePath(path).setContent(b"not firebird\n" * 5000)
        result = await engine.probe(Target("firebird", path=path), self.tools(), reactor, 30)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)
        self.assertIn("not a valid database", result.message)


class SpawnSpy:
    """The real reactor, recording what each C{spawnProcess} was given."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self.spawned: list[tuple[list[str], dict[str, str]]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: Any, env: Any = None,
                     **kw: Any) -> Any:
        self.spawned.append((list(args), dict(env or {})))
        return self._reactor.spawnProcess(protocol, executable, args, env, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)


class ServerTests(TestCase):
    """A private Firebird server on 127.0.0.1 (Srp authentication)."""

    def tools(self) -> ToolFinder:
        return ToolFinder(reactor, defaultToolPath())

    def target(self, server: Any, **changes: Any) -> Target:
        fields: dict[str, Any] = {"host": server.host, "port": server.port,
                                  "database": server.database, "user": server.user,
                                  "password": server.password}
        fields.update(changes)
        return Target("firebird", **fields)

    async def test_success(self) -> None:
        server = await startFirebirdServer(self)
        result = await engine.probe(self.target(server), self.tools(), reactor, 30)
        self.assertTrue(result.ok, result)
        self.assertRegex(result.serverVersion, r"^3\.0\.\d+$")
        self.assertGreater(result.sizeBytes, 0)
        self.assertIn("server", result.message)

    async def test_passwordOnlyInTheEnvironment(self) -> None:
        """What was really spawned: the password in ISC_PASSWORD, never on argv."""
        server = await startFirebirdServer(self)
        spy = SpawnSpy(reactor)
        result = await engine.probe(self.target(server), ToolFinder(spy, defaultToolPath()),
                                    spy, 30)
        self.assertTrue(result.ok, result)
        self.assertTrue(spy.spawned)
        for argv, _env in spy.spawned:
            self.assertFalse(any(server.password in part for part in argv), argv)
        argv, env = spy.spawned[-1]
        self.assertEqual(argv[-1], f"{server.host}/{server.port}:{server.database}")
        self.assertEqual((env["ISC_USER"], env["ISC_PASSWORD"]), (server.user, server.password))

    async def test_wrongPassword(self) -> None:
        server = await startFirebirdServer(self)
        bad = wrongPassword(server.password)
        result = await engine.probe(self.target(server, password=bad), self.tools(), reactor, 30)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, DB_AUTH_FAILED)
        self.assertNotIn(bad, result.message)
        self.assertNotIn(server.password, result.message)

    async def test_wrongPort(self) -> None:
        server = await startFirebirdServer(self)
        result = await engine.probe(self.target(server, port=wrongPort()), self.tools(),
                                    reactor, 30)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, HOST_UNREACHABLE)
        self.assertNotIn(server.password, result.message)

    async def test_missingDatabase(self) -> None:
        server = await startFirebirdServer(self)
        missing = os.path.join(server.dataDir, "missing.fdb")
        result = await engine.probe(self.target(server, database=missing), self.tools(),
                                    reactor, 30)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)
