"""
The database configurations of a server: what the responders call.

Validation first, so nothing invalid is ever stored; passwords sealed
before they touch the store; optimistic concurrency on every change.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any

from attrs import evolve
from twisted.logger import Logger

from backupremote.protocol.databases import (
    ConnectionTestResult,
    DatabaseConfig,
    DatabaseConfigInput,
    DatabaseConfigPage,
    Finding,
    PreflightReport,
)
from backupremote.protocol.errors import (
    CONFLICT,
    INTERNAL_ERROR,
    PERMISSION_DENIED,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.options import BackupOptions
from backupremote.reactors import IWorkReactor
from backupremote.secretbox import SecretBox, SecretBoxError
from backupremote.server.config import ServerConfig
from backupremote.server.databases.busy import BusyConfigs
from backupremote.server.databases.preflight import preflight
from backupremote.server.databases.store import DatabaseConfigStore, StoredConfig, notFound
from backupremote.server.databases.validation import (
    checkBackupOptions,
    resolveUnderRoots,
    validateConfig,
)
from backupremote.server.engines.base import FieldProblems, IEngine, Target, failed
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.staging import StagingArea
from backupremote.server.state.ownership import Ownership

MAX_PAGE = 100
_log = Logger(namespace="backupremote.server.databases")

#: The fields that say where a stored password goes.
TARGET_FIELDS = ("engine", "host", "port", "user", "database", "path")


def passwordBoundChanges(current: StoredConfig, config: DatabaseConfigInput,
                         engine: IEngine) -> list[str]:
    """
    The changes from C{current} to C{config} that the stored password is
    bound to: where it goes (L{TARGET_FIELDS}) and how securely it travels
    there (every engine option but those the engine declares
    C{optionsKeepingPassword}, so TLS settings such as PostgreSQL's
    C{sslmode} or MariaDB's C{ssl}), as field names.
    """
    changed = [name for name in TARGET_FIELDS
               if getattr(config, name) != getattr(current, name)]
    keeping = engine.optionsKeepingPassword
    for key in sorted(set(current.options) | set(config.options)):
        if key not in keeping and current.options.get(key) != config.options.get(key):
            changed.append(f"options.{key}")
    return changed


class DatabaseConfigs:
    """Create, read, update, delete, test and preflight configurations."""

    def __init__(
        self, store: DatabaseConfigStore, box: SecretBox, config: ServerConfig,
        reactor: IWorkReactor, tools: ToolFinder, busy: BusyConfigs,
        engines: Mapping[str, IEngine], staging: StagingArea,
        scripts: Any = None, ownership: Ownership | None = None,
    ) -> None:
        self._scripts = scripts
        #: who may see which configuration: by default each client its own only
        self.ownership = ownership or Ownership()
        self._store = store
        self._box = box
        self._config = config
        self._reactor = reactor
        self.tools = tools
        #: the configurations a run uses now (the run queue keeps it)
        self.busy = busy
        #: the engines this server knows, by name
        self.engines = engines
        self._staging = staging

    @property
    def roots(self) -> dict[str, Any]:
        return {"sqlite": self._config.sqliteRoots, "firebird": self._config.firebirdRoots}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)

    def _seal(self, password: str | None, configId: str) -> str | None:
        return None if password is None else self._box.seal(password, configId)

    def owned(self, clientId: str, configId: str) -> StoredConfig:
        """
        The stored configuration C{configId} if C{clientId} may act on it;
        C{NOT_FOUND} otherwise, the same answer as for an id that does not exist.
        """
        stored = self._store.get(configId)
        if stored is None or not self.ownership.allows(clientId, stored.owner):
            raise notFound(configId)
        return stored

    def create(self, clientId: str, given: DatabaseConfigInput) -> DatabaseConfig:
        """Store a new configuration owned by C{clientId}."""
        config = validateConfig(given, self.roots, self.engines)
        configId = str(uuid.uuid4())
        now = self._now()
        stored = StoredConfig(
            id=configId, owner=clientId, name=config.name, engine=config.engine,
            host=config.host, port=config.port, database=config.database, user=config.user,
            path=config.path, options=dict(config.options), backup=config.backup,
            passwordSealed=self._seal(config.password, configId),
            version=1, createdAt=now, updatedAt=now,
        )
        self._store.insert(stored)
        return stored.view()

    def update(self, clientId: str, configId: str, version: int,
               given: DatabaseConfigInput) -> DatabaseConfig:
        """Change a configuration; its owner stays (an admin's change included)."""
        current = self.owned(clientId, configId)
        config = validateConfig(given, self.roots, self.engines)
        changed = passwordBoundChanges(current, config, self.engines[config.engine])
        if (changed and current.passwordSealed is not None and config.password is None
                and not config.removePassword):
            # never send a stored password somewhere, or less securely, than
            # its owner did: a new host, or sslmode=disable, must bring it again
            listed = ", ".join(changed)
            raise BackupRemoteError(
                VALIDATION_FAILED, "invalid configuration: password must be given again "
                f"(or removed) because {listed} changed; the stored password is only "
                "sent to the target and with the transport security it was given for",
                details={"fields": {"password": "must be given again when the connection "
                                                f"target or its security changes ({listed})"}})
        if config.password is not None:
            sealed = self._seal(config.password, configId)
        elif config.removePassword:
            sealed = None
        else:
            sealed = current.passwordSealed
        stored = StoredConfig(
            id=configId, owner=current.owner, name=config.name, engine=config.engine,
            host=config.host, port=config.port, database=config.database, user=config.user,
            path=config.path, options=dict(config.options), backup=config.backup,
            passwordSealed=sealed, version=version + 1,
            createdAt=current.createdAt, updatedAt=self._now(),
        )
        self._store.replace(stored, expectedVersion=version)
        return stored.view()

    def delete(self, clientId: str, configId: str, version: int | None) -> None:
        self.owned(clientId, configId)
        if self.busy.isBusy(configId):
            raise BackupRemoteError(
                CONFLICT, "a backup of this configuration is in progress; cancel it or "
                          "wait for it to end, then delete")
        self._store.delete(configId, version)

    def get(self, clientId: str, configId: str) -> DatabaseConfig:
        return self.owned(clientId, configId).view()

    def stored(self, configId: str) -> StoredConfig:
        """
        The stored configuration (with its sealed password), or C{NOT_FOUND},
        whoever owns it: for the server's own work (a run already admitted).
        Requests of a client go through L{owned}.
        """
        return self._store.require(configId)

    def page(self, clientId: str, offset: int | None, limit: int | None
             ) -> DatabaseConfigPage:
        """A page of the configurations C{clientId} may see (an admin: all of them)."""
        offset = 0 if offset is None else offset
        limit = MAX_PAGE if limit is None else limit
        problems = FieldProblems()
        if offset < 0:
            problems.add("offset", "must be 0 or more")
        if not 1 <= limit <= MAX_PAGE:
            problems.add("limit", f"must be 1..{MAX_PAGE}")
        if problems:
            raise BackupRemoteError(VALIDATION_FAILED, "invalid paging",
                                    details={"fields": problems.fields})
        items, total = self._store.page(self.ownership.scope(clientId), offset, limit)
        return DatabaseConfigPage([item.view() for item in items], total, offset)

    def target(self, stored: StoredConfig) -> Target:
        """The stored config made usable: password opened, path checked again."""
        password = None
        if stored.passwordSealed is not None:
            try:
                password = self._box.open(stored.passwordSealed, stored.id)
            except SecretBoxError:
                _log.error("the stored password of database config {configId} does not "
                           "decrypt with this data folder's secrets.key", configId=stored.id)
                raise BackupRemoteError(
                    INTERNAL_ERROR, "the stored password cannot be decrypted with the "
                                    "server's key file; set the password again") from None
        path = stored.path
        if path is not None:
            path = resolveUnderRoots(path, self.roots.get(stored.engine, ()))
            if path is None:
                raise BackupRemoteError(
                    PERMISSION_DENIED, "the database file no longer lies under a folder "
                                       "the server allows (a link may have changed)")
        return Target(stored.engine, stored.host, stored.port, stored.database,
                      stored.user, password, path, dict(stored.options))

    @staticmethod
    def _targetOf(config: DatabaseConfigInput) -> Target:
        return Target(config.engine, config.host, config.port, config.database,
                      config.user, config.password, config.path, dict(config.options))

    async def test(self, clientId: str, configId: str | None,
                   given: DatabaseConfigInput | None) -> ConnectionTestResult:
        """Probe a stored configuration, or an unsaved one."""
        if (configId is None) == (given is None):
            raise BackupRemoteError(VALIDATION_FAILED, "give either id or config",
                                    details={"fields": {"id": "or config is required, not both"}})
        if given is not None:
            target = self._targetOf(validateConfig(given, self.roots, self.engines))
        else:
            assert configId is not None
            try:
                target = self.target(self.owned(clientId, configId))
            except BackupRemoteError as error:
                if error.code != PERMISSION_DENIED:
                    raise
                return failed(error.code, error.message)
        engine = self.engines[target.engine]
        return await engine.probe(target, self.tools, self._reactor,
                                  self._config.connectionTimeout)

    def checkOptions(self, stored: StoredConfig, options: BackupOptions) -> None:
        """Raise C{VALIDATION_FAILED} naming every problem of C{options} for C{stored}."""
        problems = FieldProblems()
        checkBackupOptions(options, self.engines[stored.engine], problems, prefix="")
        if problems:
            raise BackupRemoteError(
                VALIDATION_FAILED, "invalid options: " + "; ".join(
                    f"{k} {v}" for k, v in sorted(problems.fields.items())),
                details={"fields": problems.fields})

    async def preflight(self, configId: str, options: BackupOptions | None) -> PreflightReport:
        """
        Blockers and warnings for a backup of C{configId}, whoever owns it:
        callers check first that the client may (L{owned}).
        """
        stored = self._store.require(configId)
        options = options or stored.backup
        self.checkOptions(stored, options)
        try:
            target = self.target(stored)
        except BackupRemoteError as error:
            if error.code != PERMISSION_DENIED:
                raise
            return PreflightReport(ok=False, blockers=[Finding(error.code, error.message)],
                                   warnings=[], options=options)
        report = await preflight(self.engines[stored.engine], target, options, self.tools,
                                 self._reactor, self._config.connectionTimeout, self._staging)
        if options.postScript is not None and self._scripts is not None:
            try:
                self._scripts.find(options.postScript)
            except BackupRemoteError as error:
                report = evolve(report, ok=False,
                                blockers=[*report.blockers, Finding(error.code, error.message)])
        return report
