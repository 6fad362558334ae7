"""Database configurations in the server's SQLite store."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

from attrs import field, frozen

from backupremote.protocol.databases import DatabaseConfig
from backupremote.protocol.errors import CONFLICT, NOT_FOUND, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.structured import converter

_SETTINGS = ("host", "port", "database", "user", "path", "options", "backup")


@frozen
class StoredConfig:
    """A configuration row; C{passwordSealed} is ciphertext, never shown."""

    id: str
    #: the client that created it; C{None}: only admins see it (see ownership.py)
    owner: str | None
    name: str
    engine: str
    host: str | None
    port: int | None
    database: str | None
    user: str | None
    path: str | None
    options: dict[str, str]
    backup: BackupOptions
    passwordSealed: str | None = field(repr=False)
    version: int
    createdAt: datetime
    updatedAt: datetime

    def view(self) -> DatabaseConfig:
        """What a client may see: everything but the password."""
        return DatabaseConfig(
            id=self.id, name=self.name, engine=self.engine, host=self.host,
            port=self.port, database=self.database, user=self.user,
            hasPassword=self.passwordSealed is not None, path=self.path,
            options=dict(self.options), backup=self.backup, version=self.version,
            createdAt=self.createdAt, updatedAt=self.updatedAt, owner=self.owner,
        )


def notFound(configId: str) -> BackupRemoteError:
    """The answer for an id that does not exist, or that the caller may not see: the same."""
    return BackupRemoteError(NOT_FOUND, f"no database configuration has the id {configId!r}")


def _nameTaken(name: str) -> BackupRemoteError:
    # Names are unique per owner, so this never tells of another client's names.
    return BackupRemoteError(
        CONFLICT, f"a database configuration named {name!r} exists already; choose another name",
        details={"fields": {"name": "is already used"}},
    )


_COLUMNS = "id, owner, name, engine, settings, passwordSealed, version, createdAt, updatedAt"


class DatabaseConfigStore:
    """CRUD with optimistic concurrency on the C{database_configs} table."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def _row(self, config: StoredConfig) -> tuple[Any, ...]:
        settings = {name: converter.unstructure(getattr(config, name)) for name in _SETTINGS}
        return (
            config.id, config.owner, config.name, config.engine,
            json.dumps(settings, sort_keys=True),
            config.passwordSealed, config.version,
            config.createdAt.isoformat(), config.updatedAt.isoformat(),
        )

    @staticmethod
    def _config(row: tuple[Any, ...]) -> StoredConfig:
        configId, owner, name, engine, settings, sealed, version, created, updated = row
        values = json.loads(settings)
        return StoredConfig(
            id=configId, owner=owner, name=name, engine=engine,
            host=values["host"], port=values["port"], database=values["database"],
            user=values["user"], path=values["path"], options=values["options"],
            backup=converter.structure(values["backup"], BackupOptions),
            passwordSealed=sealed, version=version,
            createdAt=datetime.fromisoformat(created).astimezone(timezone.utc),
            updatedAt=datetime.fromisoformat(updated).astimezone(timezone.utc),
        )

    def insert(self, config: StoredConfig) -> None:
        try:
            self._db.execute(f"INSERT INTO database_configs ({_COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._row(config))
        except sqlite3.IntegrityError:
            raise _nameTaken(config.name) from None

    def replace(self, config: StoredConfig, expectedVersion: int) -> None:
        """Store C{config} if the row is still at C{expectedVersion}."""
        row = self._row(config)
        try:
            changed = self._db.execute(
                "UPDATE database_configs SET owner = ?, name = ?, engine = ?, settings = ?, "
                "passwordSealed = ?, version = ?, createdAt = ?, updatedAt = ? "
                "WHERE id = ? AND version = ?",
                (*row[1:], config.id, expectedVersion),
            ).rowcount
        except sqlite3.IntegrityError:
            raise _nameTaken(config.name) from None
        if not changed:
            self._raiseStale(config.id, expectedVersion)

    def delete(self, configId: str, expectedVersion: int | None) -> None:
        if expectedVersion is None:
            changed = self._db.execute("DELETE FROM database_configs WHERE id = ?",
                                       (configId,)).rowcount
        else:
            changed = self._db.execute(
                "DELETE FROM database_configs WHERE id = ? AND version = ?",
                (configId, expectedVersion)).rowcount
        if not changed:
            self._raiseStale(configId, expectedVersion)

    def _raiseStale(self, configId: str, expectedVersion: int | None) -> None:
        current = self.get(configId)
        if current is None:
            raise notFound(configId)
        raise BackupRemoteError(
            CONFLICT,
            f"the configuration changed since it was read (version {expectedVersion} sent, "
            f"{current.version} current); read it again and retry",
            details={"currentVersion": current.version},
        )

    def get(self, configId: str) -> StoredConfig | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM database_configs WHERE id = ?",
                               (configId,)).fetchone()
        return self._config(row) if row else None

    def require(self, configId: str) -> StoredConfig:
        config = self.get(configId)
        if config is None:
            raise notFound(configId)
        return config

    def page(self, owner: str | None, offset: int, limit: int
             ) -> tuple[list[StoredConfig], int]:
        """The configurations of C{owner} (C{None}: of everyone), by name, and their count."""
        where, scope = ("", ()) if owner is None else ("WHERE owner = ? ", (owner,))
        total = self._db.execute(f"SELECT count(*) FROM database_configs {where}",
                                 scope).fetchone()[0]
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM database_configs {where}"
            "ORDER BY name, id LIMIT ? OFFSET ?", (*scope, limit, offset)).fetchall()
        return [self._config(row) for row in rows], total

    def snapshot(self) -> list[tuple[Any, ...]]:
        """Every row as stored (for tests that prove nothing changed)."""
        return self._db.execute("SELECT * FROM database_configs ORDER BY id").fetchall()
