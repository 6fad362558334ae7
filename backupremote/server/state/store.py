"""
The server's state: one SQLite database in the data folder.

WAL mode, and a schema that only moves forward through numbered migrations.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from twisted.internet.interfaces import IReactorTime
from twisted.python.filepath import FilePath

from backupremote.private import makePrivateFolder, privateFile
from backupremote.server.state.changes import StoreChanges
from backupremote.server.state.durability import RunInThread, WalFlush

#: Each entry moves the schema from version ``index`` to ``index + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE clients (
        clientId TEXT PRIMARY KEY,
        secretHash TEXT NOT NULL,
        createdAt TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        clientId TEXT,
        peer TEXT,
        requestId TEXT,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE database_configs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        engine TEXT NOT NULL,
        settings TEXT NOT NULL,
        passwordSealed TEXT,
        version INTEGER NOT NULL,
        createdAt TEXT NOT NULL,
        updatedAt TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE runs (
        runId TEXT PRIMARY KEY,
        databaseConfigId TEXT NOT NULL,
        clientId TEXT NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        artifactPath TEXT,
        createdAt TEXT NOT NULL
    );
    CREATE INDEX runs_state ON runs (state);
    CREATE TABLE run_events (
        runId TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (runId, seq)
    );
    """,
    # Version 4: every configuration has an owner, and names are unique per
    # owner. An existing configuration goes to the client of its first run,
    # else to the only registered client, else to nobody (admins only).
    """
    CREATE TABLE database_configs_owned (
        id TEXT PRIMARY KEY,
        owner TEXT,
        name TEXT NOT NULL,
        engine TEXT NOT NULL,
        settings TEXT NOT NULL,
        passwordSealed TEXT,
        version INTEGER NOT NULL,
        createdAt TEXT NOT NULL,
        updatedAt TEXT NOT NULL,
        UNIQUE (owner, name)
    );
    INSERT INTO database_configs_owned
        (id, owner, name, engine, settings, passwordSealed, version, createdAt, updatedAt)
    SELECT id,
           coalesce(
               (SELECT clientId FROM runs WHERE runs.databaseConfigId = database_configs.id
                ORDER BY createdAt, rowid LIMIT 1),
               (SELECT min(clientId) FROM clients HAVING count(*) = 1)),
           name, engine, settings, passwordSealed, version, createdAt, updatedAt
    FROM database_configs;
    DROP TABLE database_configs;
    ALTER TABLE database_configs_owned RENAME TO database_configs;
    """,
]


def _stamp(clock: IReactorTime | None) -> str:
    """Now on C{clock} (the system's clock when C{None}), as stored."""
    if clock is None:
        return datetime.now(timezone.utc).isoformat()
    return datetime.fromtimestamp(clock.seconds(), timezone.utc).isoformat()


class ClientExists(Exception):
    """A client with that id is already registered."""


class ServerStore:
    """Typed access to the server database; one instance per process."""

    def __init__(self, path: FilePath, clock: IReactorTime | None = None) -> None:
        """
        @param clock: what stamps are taken from (a server's reactor); the
            system's clock for the operator's commands that run without one.
        """
        self._clock = clock
        # 0600 before SQLite opens it, so its -wal and -shm are 0600 too;
        # those an earlier version left 0644 are tightened
        privateFile(path)
        for suffix in ("-wal", "-shm"):
            sidecar = path.siblingExtension(suffix)
            if sidecar.exists():
                sidecar.chmod(0o600)
        self._path = path
        self._flushes: list[WalFlush] = []
        self._db = sqlite3.connect(path.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        #: what caches of this database's reads are stamped with
        self.changes = StoreChanges(self._db)

    @classmethod
    def inDataDir(cls, dataDir: FilePath, clock: IReactorTime | None = None) -> ServerStore:
        """Open (creating it and the folder, mode 0700) the store of a data folder."""
        makePrivateFolder(dataDir)
        dataDir.chmod(0o700)
        return cls(dataDir.child("server.sqlite3"), clock)

    def _now(self) -> str:
        return _stamp(self._clock)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        for index in range(version, len(MIGRATIONS)):
            with self._db:
                self._db.execute("BEGIN")
                for statement in MIGRATIONS[index].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {index + 1}")

    @property
    def connection(self) -> sqlite3.Connection:
        """The database, for the typed stores of each area."""
        return self._db

    def walFlush(self, runInThread: RunInThread) -> WalFlush:
        """Waits for this database's commits in a worker thread (L{WalFlush}); closed with it."""
        flush = WalFlush(self._path, runInThread)
        self._flushes.append(flush)
        return flush

    def close(self) -> None:
        self._db.close()
        for flush in self._flushes:
            flush.close()

    def addClient(self, clientId: str, secretHash: str) -> None:
        """Register a client; raises L{ClientExists} if the id is taken."""
        try:
            self._db.execute(
                "INSERT INTO clients (clientId, secretHash, createdAt) "
                "VALUES (?, ?, ?)",
                (clientId, secretHash, self._now()),
            )
        except sqlite3.IntegrityError:
            raise ClientExists(clientId) from None

    def secretHashOf(self, clientId: str) -> str | None:
        """The stored hash of an enabled client, or C{None}."""
        row = self._db.execute(
            "SELECT secretHash FROM clients WHERE clientId = ? AND disabled = 0",
            (clientId,),
        ).fetchone()
        return row[0] if row else None

    def clientIds(self) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT clientId FROM clients ORDER BY clientId")]

    def audit(
        self, action: str, outcome: str, clientId: str | None = None,
        peer: str | None = None, requestId: str | None = None,
    ) -> None:
        """Record one security-relevant event (never a secret)."""
        self._db.execute(
            "INSERT INTO audit (at, clientId, peer, requestId, action, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (self._now(), clientId, peer, requestId, action, outcome),
        )

    def auditTrail(self) -> list[tuple[str | None, str | None, str, str]]:
        return list(self._db.execute(
            "SELECT clientId, peer, action, outcome FROM audit ORDER BY id"))
