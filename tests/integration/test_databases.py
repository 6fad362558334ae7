"""
Database configurations end to end: the client library over TLS to a real
server, which tests real PostgreSQL, MariaDB, SQLite and Firebird databases
started on 127.0.0.1 by the tests.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.protocol import errors
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from tests.databases import servers
from tests.integration.servers import startServer


class EngineCases:
    """The same cases for every engine; subclasses say how to start one."""

    engine: str

    async def startDatabase(self) -> tuple[DatabaseConfigInput, dict[str, Any]]:
        raise NotImplementedError

    async def setUpServer(self, **config: Any) -> Any:
        self.config, roots = await self.startDatabase()
        self.server = await startServer(self, **roots, **config)
        self.client = self.server.client(self)
        return self.server

    async def test_successAndSecretsKept(self) -> None:
        await self.setUpServer()
        created = await self.client.createDatabaseConfig(self.config)
        result = await self.client.testDatabaseConnection(configId=created.id)
        self.assertTrue(result.ok, result)
        self.assertIsNone(result.reason)
        self.assertTrue(result.serverVersion)
        self.assertGreater(result.sizeBytes, 0)
        self.assertGreaterEqual(result.latencyMs, 0)
        report = await self.client.preflight(created.id)
        self.assertTrue(report.ok, report)
        self.assertEqual(report.blockers, [])
        self.assertIsNotNone(report.dumpTool)
        if self.config.password:
            await self.server.service.stopService()
            logged = self.server.config.logFile.getContent()
            self.assertNotIn(self.config.password.encode(), logged)
            stored = b"".join(f.getContent() for f in self.server.config.dataDir.walk()
                              if f.isfile())
            self.assertNotIn(self.config.password.encode(), stored)

    async def test_unsavedConfig(self) -> None:
        await self.setUpServer()
        result = await self.client.testDatabaseConnection(config=self.config)
        self.assertTrue(result.ok, result)
        self.assertEqual((await self.client.listDatabaseConfigs()).total, 0)

    async def test_missingDatabase(self) -> None:
        await self.setUpServer()
        missing = self.missingDatabase(self.config)
        result = await self.client.testDatabaseConnection(config=missing)
        self.assertEqual(result.reason, errors.DATABASE_NOT_FOUND, result)

    def missingDatabase(self, config: DatabaseConfigInput) -> DatabaseConfigInput:
        return evolve(config, database="no_such_db")

    async def test_toolMissing(self) -> None:
        empty = FilePath(self.mktemp())
        empty.makedirs()
        await self.setUpServer(toolPath=(empty.path,))
        created = await self.client.createDatabaseConfig(self.config)
        result = await self.client.testDatabaseConnection(configId=created.id)
        if self.engine == "sqlite":
            self.assertTrue(result.ok)  # in-process: no program needed
        else:
            self.assertEqual(result.reason, errors.TOOL_MISSING, result)
        report = await self.client.preflight(created.id)
        codes = {f.code for f in report.blockers}
        self.assertIn(errors.COMPRESSION_UNAVAILABLE, codes)
        if self.engine != "sqlite":
            self.assertIn(errors.TOOL_MISSING, codes)
        self.assertFalse(report.ok)
        capabilities = await self.client.capabilities()
        self.assertEqual(capabilities.offer.compressions, ["none", "zip"])

    async def test_compressionUnavailable(self) -> None:
        """A server without xz says so as a preflight blocker, and lists no xz."""
        await self.setUpServer(toolPath=tuple(self.pathWithout("xz")))
        created = await self.client.createDatabaseConfig(self.config)
        report = await self.client.preflight(created.id, BackupOptions(compression="xz"))
        self.assertEqual([f.code for f in report.blockers], [errors.COMPRESSION_UNAVAILABLE])
        fine = await self.client.preflight(created.id, BackupOptions(compression="zstd"))
        self.assertTrue(fine.ok, fine)
        self.assertNotIn("xz", (await self.client.capabilities()).offer.compressions)

    def pathWithout(self, program: str) -> list[str]:
        """A tool folder with links to every program of the default path but C{program}."""
        import os

        from backupremote.server.machinery.toolfinder import defaultToolPath
        folder = FilePath(self.mktemp())
        folder.makedirs()
        for directory in reversed(defaultToolPath()):
            for name in os.listdir(directory) if os.path.isdir(directory) else ():
                target = os.path.join(directory, name)
                if name != program and os.path.isfile(target):
                    link = folder.child(name)
                    if link.exists() or link.islink():
                        link.remove()
                    os.symlink(target, link.path)
        return [folder.path]


class PasswordCases:
    """For engines with network servers: wrong password and wrong port."""

    async def test_wrongPassword(self) -> None:
        await self.setUpServer()
        wrong = servers.wrongPassword(self.config.password)
        created = await self.client.createDatabaseConfig(evolve(self.config, password=wrong))
        result = await self.client.testDatabaseConnection(configId=created.id)
        self.assertEqual(result.reason, errors.DB_AUTH_FAILED, result)
        self.assertNotIn(wrong, result.message)
        report = await self.client.preflight(created.id)
        self.assertIn(errors.DB_AUTH_FAILED, [f.code for f in report.blockers])

    async def test_wrongPort(self) -> None:
        await self.setUpServer()
        result = await self.client.testDatabaseConnection(
            config=evolve(self.config, port=servers.wrongPort()))
        self.assertEqual(result.reason, errors.HOST_UNREACHABLE, result)


class PostgreSQLTests(EngineCases, PasswordCases, TestCase):
    engine = "postgresql"

    async def startDatabase(self) -> tuple[DatabaseConfigInput, dict[str, Any]]:
        db = await servers.startPostgreSQL(self)
        return DatabaseConfigInput(
            name="pg", engine="postgresql", host=db.host, port=db.port,
            database=db.database, user=db.user, password=db.password), {}

    async def test_dumpToolMatchesServer(self) -> None:
        await self.setUpServer()
        created = await self.client.createDatabaseConfig(self.config)
        report = await self.client.preflight(created.id)
        self.assertIn("/15/", report.dumpTool.path)
        self.assertIn("15", report.dumpTool.reason)


class MariaDBTests(EngineCases, PasswordCases, TestCase):
    engine = "mariadb"

    async def startDatabase(self) -> tuple[DatabaseConfigInput, dict[str, Any]]:
        db = await servers.startMariaDB(self)
        self.superuser = (db.superuser, db.superuserPassword)
        # a backup user as docs/operations.md advises: with PROCESS, the size is known
        await db.sql(f"GRANT PROCESS ON *.* TO `{db.user}`@`127.0.0.1`;")
        return DatabaseConfigInput(
            name="maria", engine="mariadb", host=db.host, port=db.port,
            database=db.database, user=db.user, password=db.password), {}

    def missingDatabase(self, config: DatabaseConfigInput) -> DatabaseConfigInput:
        # an unprivileged user cannot tell "missing" from "not allowed" (error
        # 1044); the superuser can
        return evolve(config, database="no_such_db", user=self.superuser[0],
                      password=self.superuser[1])


class SQLiteTests(EngineCases, TestCase):
    engine = "sqlite"

    async def startDatabase(self) -> tuple[DatabaseConfigInput, dict[str, Any]]:
        db = await servers.startSQLite(self)
        return (DatabaseConfigInput(name="notes", engine="sqlite", path=db.path),
                {"sqliteRoots": (FilePath(db.folder),)})

    def missingDatabase(self, config: DatabaseConfigInput) -> DatabaseConfigInput:
        return evolve(config, path=config.path + ".missing")


class FirebirdFileTests(EngineCases, TestCase):
    engine = "firebird"

    async def startDatabase(self) -> tuple[DatabaseConfigInput, dict[str, Any]]:
        db = await servers.startFirebird(self)
        return (DatabaseConfigInput(name="fb", engine="firebird", path=db.path, user=db.user),
                {"firebirdRoots": (FilePath(db.folder),)})

    def missingDatabase(self, config: DatabaseConfigInput) -> DatabaseConfigInput:
        return evolve(config, path=config.path + ".missing")


class FirebirdServerTests(PasswordCases, TestCase):
    engine = "firebird"

    async def setUpServer(self, **config: Any) -> Any:
        db = await servers.startFirebirdServer(self)
        self.config = DatabaseConfigInput(
            name="fbs", engine="firebird", host=db.host, port=db.port,
            database=db.database, user=db.user, password=db.password)
        self.server = await startServer(self, **config)
        self.client = self.server.client(self)
        return self.server

    async def test_success(self) -> None:
        await self.setUpServer()
        result = await self.client.testDatabaseConnection(config=self.config)
        self.assertTrue(result.ok, result)
        self.assertTrue(result.serverVersion.startswith("3."))

    async def test_missingDatabase(self) -> None:
        await self.setUpServer()
        result = await self.client.testDatabaseConnection(
            config=evolve(self.config, database=self.config.database + ".missing"))
        self.assertEqual(result.reason, errors.DATABASE_NOT_FOUND, result)



class CapabilitiesTests(TestCase):
    async def test_enginesAndCompressionsListed(self) -> None:
        server = await startServer(self)
        offer = (await server.client(self).capabilities()).offer
        engines = {e.engine: e for e in offer.engines}
        self.assertEqual(set(engines), {"postgresql", "mariadb", "sqlite", "firebird"})
        self.assertTrue(engines["postgresql"].tool.endswith("pg_dump"))
        self.assertRegex(engines["postgresql"].toolVersion, r"^\d+\.\d+")
        self.assertTrue(engines["firebird"].tool.endswith("gbak"))
        self.assertEqual(offer.compressions, ["none", "gzip", "zstd", "xz", "zip"])
        self.assertEqual(offer.checksums, ["sha256", "blake2b"])
