"""
The database fixtures of L{tests.databases.servers} start real engines that
take the returned credentials, refuse wrong ones, and leave nothing behind.
"""

from __future__ import annotations

import os
import socket

from twisted.trial.unittest import TestCase

from tests.databases import servers
from tests.databases.servers import (
    ROW_COUNT, TABLE, isAlive, processesIn, runProcess, startFirebird, startFirebirdServer, startMariaDB,
    startPostgreSQL, startSQLite, wrongPassword, wrongPort,
)


def lastInt(text: str) -> int:
    return int(text.split()[-1])


class HelperTests(TestCase):
    def test_wrongPortRefuses(self) -> None:
        port = wrongPort()
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex((servers.HOST, port)), 0)

    def test_wrongPasswordDiffers(self) -> None:
        self.assertNotEqual(wrongPassword("secret"), "secret")
        self.assertNotEqual(wrongPassword(servers.WRONG_PASSWORD), servers.WRONG_PASSWORD)

    async def test_runProcess(self) -> None:
        result = await runProcess(["cat"], stdin="hello")
        self.assertEqual((result.out, result.code), ("hello", 0))


class PostgreSQLTests(TestCase):
    async def test_appUserCountsRows(self) -> None:
        server = await startPostgreSQL(self)
        argv = ["psql", "-X", "-A", "-t", "-h", server.host, "-p", str(server.port),
                "-U", server.user, "-d", server.database, "-c", f"SELECT count(*) FROM {TABLE}"]
        result = await runProcess(argv, server.env())
        self.assertEqual((result.code, lastInt(result.out)), (0, ROW_COUNT), result)

    async def test_superuserSql(self) -> None:
        server = await startPostgreSQL(self)
        out = await server.sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user;")
        self.assertEqual(out.strip(), "t")
        out = await server.sql(f"SELECT count(*) FROM {TABLE};", database=server.database)
        self.assertEqual(lastInt(out), ROW_COUNT)

    async def test_pgDumpAsAppUser(self) -> None:
        server = await startPostgreSQL(self)
        result = await runProcess(
            ["pg_dump", "-h", server.host, "-p", str(server.port), "-U", server.user,
             "-d", server.database], server.env())
        self.assertEqual(result.code, 0, result)
        self.assertIn(f"COPY public.{TABLE}", result.out)

    async def test_wrongPasswordRefused(self) -> None:
        server = await startPostgreSQL(self)
        result = await server.query("SELECT 1;", password=wrongPassword(server.password))
        self.assertNotEqual(result.code, 0)
        self.assertIn("password authentication failed", result.err)

    async def test_wrongPortRefused(self) -> None:
        server = await startPostgreSQL(self)
        result = await server.query("SELECT 1;", port=wrongPort())
        self.assertNotEqual(result.code, 0)
        self.assertIn("refused", result.err)

    async def test_cleanupStopsServer(self) -> None:
        server = await startPostgreSQL(self)
        pid = server.pid
        self.assertTrue(isAlive(pid))
        children = processesIn(server.folder)
        self.assertIn(pid, children)
        self.assertGreater(len(children), 1)  # checkpointer, walwriter...
        await server.stop()
        self.assertFalse(isAlive(pid))
        self.assertIsNone(server.pid)
        self.assertEqual([p for p in children if isAlive(p)], [])
        self.assertFalse(os.path.exists(server.folder))
        await server.stop()  # idempotent, and the test's cleanup calls it again


class MariaDBTests(TestCase):
    async def test_appUserCountsRows(self) -> None:
        server = await startMariaDB(self)
        options = server.optionsFile()
        self.assertEqual(os.stat(options).st_mode & 0o777, 0o600)
        argv = ["mariadb", f"--defaults-extra-file={options}", "-N", "-B",
                "-h", server.host, "-P", str(server.port), server.database,
                "-e", f"SELECT count(*) FROM {TABLE}"]
        result = await runProcess(argv)
        self.assertEqual((result.code, lastInt(result.out)), (0, ROW_COUNT), result)

    async def test_superuserSql(self) -> None:
        server = await startMariaDB(self)
        out = await server.sql("SELECT CURRENT_USER();")
        self.assertTrue(out.startswith("root@"), out)
        out = await server.sql(f"SELECT count(*) FROM {TABLE};", database=server.database)
        self.assertEqual(lastInt(out), ROW_COUNT)

    async def test_dumpAsAppUser(self) -> None:
        server = await startMariaDB(self)
        result = await runProcess(
            ["mariadb-dump", f"--defaults-extra-file={server.optionsFile()}",
             "--single-transaction", server.database])
        self.assertEqual(result.code, 0, result)
        self.assertIn(f"INSERT INTO `{TABLE}`", result.out)
        self.assertIn("-- Dump completed on", result.out)

    async def test_wrongPasswordRefused(self) -> None:
        server = await startMariaDB(self)
        for user in (server.user, server.superuser):
            result = await server.query("SELECT 1;", user=user, password=wrongPassword())
            self.assertNotEqual(result.code, 0)
            self.assertIn("Access denied", result.err)

    async def test_wrongPortRefused(self) -> None:
        server = await startMariaDB(self)
        result = await server.query("SELECT 1;", port=wrongPort())
        self.assertNotEqual(result.code, 0)
        self.assertIn("Can't connect", result.err)

    async def test_cleanupStopsServer(self) -> None:
        server = await startMariaDB(self)
        pid = server.pid
        with open(server.pidFile) as f:
            self.assertEqual(int(f.read()), pid)
        self.assertTrue(isAlive(pid))
        self.assertEqual(processesIn(server.folder), [pid])
        await server.stop()
        self.assertFalse(isAlive(pid))
        self.assertIsNone(server.pid)
        self.assertFalse(os.path.exists(server.folder))


class FirebirdEmbeddedTests(TestCase):
    async def test_countsRows(self) -> None:
        db = await startFirebird(self)
        result = await runProcess(["isql-fb", "-q", "-user", db.user, db.path],
                                  stdin=f"SELECT count(*) FROM {TABLE};\n")
        self.assertEqual((result.code, lastInt(result.out)), (0, ROW_COUNT), result)

    async def test_gbakStreamsBackup(self) -> None:
        db = await startFirebird(self)
        result = await runProcess(["gbak", "-b", "-user", db.user, db.path, "stdout"])
        self.assertEqual(result.code, 0, result.err)
        self.assertGreater(len(result.out), 1000)

    async def test_cleanupRemovesFolder(self) -> None:
        db = await startFirebird(self)
        self.assertTrue(os.path.exists(db.path))
        await db.stop()
        self.assertFalse(os.path.exists(db.folder))


class FirebirdServerTests(TestCase):
    async def test_appUserCountsRows(self) -> None:
        server = await startFirebirdServer(self)
        result = await runProcess(["isql-fb", "-q", server.dsn()], server.env(),
                                  f"SELECT count(*) FROM {TABLE};\n")
        self.assertEqual((result.code, lastInt(result.out)), (0, ROW_COUNT), result)

    async def test_superuserSql(self) -> None:
        server = await startFirebirdServer(self)
        out = await server.sql("SET HEADING OFF;\nSELECT CURRENT_USER FROM rdb$database;\n")
        self.assertEqual(out.strip(), "SYSDBA")

    async def test_gbakOverTcpAsOwner(self) -> None:
        server = await startFirebirdServer(self)
        result = await runProcess(["gbak", "-b", server.dsn(), "stdout"], server.env())
        self.assertEqual(result.code, 0, result.err)
        self.assertGreater(len(result.out), 1000)

    async def test_wrongPasswordRefused(self) -> None:
        server = await startFirebirdServer(self)
        for user in (server.user, server.superuser):
            result = await server.query("SELECT 1 FROM rdb$database;\n", user=user,
                                        password=wrongPassword())
            self.assertNotEqual(result.code, 0)
            self.assertIn("user name and password are not defined", result.err)

    async def test_wrongPortRefused(self) -> None:
        server = await startFirebirdServer(self)
        result = await server.query("SELECT 1 FROM rdb$database;\n", port=wrongPort())
        self.assertNotEqual(result.code, 0)
        self.assertIn("Unable to complete network request", result.err)

    async def test_cleanupStopsServer(self) -> None:
        server = await startFirebirdServer(self)
        pid = server.pid
        self.assertTrue(isAlive(pid))
        self.assertEqual(processesIn(server.folder), [pid])
        await server.stop()
        self.assertFalse(isAlive(pid))
        self.assertIsNone(server.pid)
        self.assertFalse(os.path.exists(server.folder))


class SQLiteTests(TestCase):
    async def test_countsRows(self) -> None:
        db = await startSQLite(self)
        result = await runProcess(["sqlite3", db.path, f"SELECT count(*) FROM {TABLE};"])
        self.assertEqual((result.code, lastInt(result.out)), (0, ROW_COUNT), result)
        self.assertEqual(lastInt(await db.sql(f"SELECT max(id) FROM {TABLE};")), ROW_COUNT)

    async def test_cleanupRemovesFolder(self) -> None:
        db = await startSQLite(self)
        await db.stop()
        self.assertFalse(os.path.exists(db.folder))
