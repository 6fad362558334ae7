"""
Database configurations kept on the server, and the commands that manage,
test and preflight them.
"""

from __future__ import annotations

from datetime import datetime

from attrs import field, frozen
from twisted.protocols import amp

from backupremote.protocol.features import REMOTE_CONNECTION_TEST, REMOTE_DB_CONFIG
from backupremote.protocol.base import Request
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.structured import Structured

ENGINES = ("postgresql", "mariadb", "sqlite", "firebird")


@frozen
class DatabaseConfigInput:
    """
    What a client sends to create or update a configuration.

    C{password} is write-only: on update, C{None} keeps the stored one and
    C{removePassword} drops it. C{path} is a database file on the server
    (SQLite, or a local Firebird file) and must lie under a root the
    server's operator allows.
    """

    name: str
    engine: str
    host: str | None = None
    port: int | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    removePassword: bool = False
    path: str | None = None
    options: dict[str, str] = field(factory=dict)
    backup: BackupOptions = field(factory=BackupOptions)


@frozen
class DatabaseConfig:
    """A stored configuration as the server shows it: never the password."""

    id: str
    name: str
    engine: str
    host: str | None
    port: int | None
    database: str | None
    user: str | None
    hasPassword: bool
    path: str | None
    options: dict[str, str]
    backup: BackupOptions
    version: int
    createdAt: datetime
    updatedAt: datetime
    #: the client that created it (C{None}: left without one by a schema migration)
    owner: str | None = None


@frozen
class DatabaseConfigPage:
    """A slice of the configurations, ordered by name."""

    items: list[DatabaseConfig]
    total: int
    offset: int


@frozen
class ConnectionTestResult:
    """
    What a connection test on the server found.

    C{reason} is C{None} when C{ok}, else a code such as C{DB_AUTH_FAILED},
    C{HOST_UNREACHABLE}, C{DATABASE_NOT_FOUND}, C{TOOL_MISSING}, C{TIMEOUT}
    or C{PERMISSION_DENIED}.
    """

    ok: bool
    reason: str | None
    message: str
    serverVersion: str | None = None
    latencyMs: float | None = None
    sizeBytes: int | None = None
    tool: str | None = None


@frozen
class Finding:
    """One blocker or warning of a preflight, with its registry code."""

    code: str
    message: str


@frozen
class ToolChoice:
    """The program the server would run, and why that one."""

    name: str
    path: str
    version: str
    reason: str


@frozen
class PreflightReport:
    """Whether a backup of a configuration could start now, and what stands in the way."""

    ok: bool
    blockers: list[Finding]
    warnings: list[Finding]
    dumpTool: ToolChoice | None = None
    compressionTool: ToolChoice | None = None
    sizeEstimate: int | None = None
    freeBytes: int | None = None
    options: BackupOptions | None = None
    serverVersion: str | None = None


class CreateDatabaseConfig(Request):
    """Store a new configuration; the server makes its id."""

    commandName = b"createDatabaseConfig"
    feature = REMOTE_DB_CONFIG
    arguments = [(b"config", Structured(DatabaseConfigInput))]
    response = [(b"config", Structured(DatabaseConfig, answer=True))]


class UpdateDatabaseConfig(Request):
    """Replace a configuration; C{version} must be the one last read."""

    commandName = b"updateDatabaseConfig"
    feature = REMOTE_DB_CONFIG
    arguments = [
        (b"id", amp.Unicode()),
        (b"version", amp.Integer()),
        (b"config", Structured(DatabaseConfigInput)),
    ]
    response = [(b"config", Structured(DatabaseConfig, answer=True))]


class DeleteDatabaseConfig(Request):
    """Remove a configuration (refused while a run of it is in progress)."""

    commandName = b"deleteDatabaseConfig"
    feature = REMOTE_DB_CONFIG
    arguments = [(b"id", amp.Unicode()), (b"version", amp.Integer(optional=True))]
    response = [(b"id", amp.Unicode())]


class ListDatabaseConfigs(Request):
    """The configurations, by name, C{limit} (at most 100) from C{offset}."""

    commandName = b"listDatabaseConfigs"
    feature = REMOTE_DB_CONFIG
    arguments = [
        (b"offset", amp.Integer(optional=True)),
        (b"limit", amp.Integer(optional=True)),
    ]
    response = [(b"page", Structured(DatabaseConfigPage, answer=True))]


class GetDatabaseConfigById(Request):
    """One configuration."""

    commandName = b"getDatabaseConfigById"
    feature = REMOTE_DB_CONFIG
    arguments = [(b"id", amp.Unicode())]
    response = [(b"config", Structured(DatabaseConfig, answer=True))]


class TestDatabaseConnection(Request):
    """Connect from the server: a stored config by C{id}, or an unsaved C{config}."""

    commandName = b"testDatabaseConnection"
    feature = REMOTE_CONNECTION_TEST
    arguments = [
        (b"id", amp.Unicode(optional=True)),
        (b"config", Structured(DatabaseConfigInput, optional=True)),
    ]
    response = [(b"result", Structured(ConnectionTestResult, answer=True))]


class ValidateServerBackupPrerequisites(Request):
    """Preflight a backup of config C{id} with C{options} (default: its own)."""

    commandName = b"validateServerBackupPrerequisites"
    feature = REMOTE_CONNECTION_TEST
    arguments = [
        (b"id", amp.Unicode()),
        (b"options", Structured(BackupOptions, optional=True)),
    ]
    response = [(b"report", Structured(PreflightReport, answer=True))]
