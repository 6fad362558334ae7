"""
What dumps and what checks each engine: one L{DumpPlan} per run.

The command lines, environments and messages come from the engine modules
(the password never on a command line: C{PGPASSWORD} for PostgreSQL, a 0600
option file for MariaDB that is removed when the dump ends, C{ISC_USER} and
C{ISC_PASSWORD} for Firebird); this module only picks them by engine and
format and says how the artifact is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from attrs import define, field, frozen

from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import FORMATS, BackupOptions
from backupremote.server.engines import firebird, mariadb, postgresql, sqlite
from backupremote.server.engines.base import IEngine, Target
from backupremote.server.tools import Tool, ToolFinder


@frozen
class EngineCheck:
    """
    How the decompressed stream is checked (verification "stream" and
    "full"), cheapest first:

      - C{head}: a test of the first L{HEAD_BYTES} bytes;
      - C{trailer}: bytes that must appear in the last L{TAIL_BYTES};
      - C{streamArgv} / C{fullArgv}: a program reading the whole stream on
        stdin, which must exit 0 (C{fullArgv} gets the path of a scratch
        file in the run folder it may create, e.g. a restored database);
      - C{integrity}: SQLite's C{PRAGMA integrity_check} of the stream
        written to a file ("full" only).
    """

    description: str
    head: Callable[[bytes], bool] | None = None
    trailer: bytes | None = None
    streamArgv: list[str] | None = None
    fullArgv: Callable[[str], list[str]] | None = None
    fullScratchSuffix: str = ""
    integrity: bool = False
    env: dict[str, str] = field(factory=dict)


HEAD_BYTES = 64
TAIL_BYTES = 4096


@define
class DumpPlan:
    """
    One run's dump: a program writing the backup to its stdout (C{argv},
    C{env}), or, for SQLite, the online backup of the file C{sqlitePath}.
    C{resources} holds what must live exactly as long as the dump (the
    MariaDB option file) and is closed when the dump ends, however.
    """

    engine: str
    format: str
    extension: str
    toolName: str
    check: EngineCheck
    messageOf: Callable[[str], str]
    argv: list[str] | None = None
    env: dict[str, str] = field(factory=dict)
    sqlitePath: str | None = None
    resources: ExitStack = field(factory=ExitStack)


def chooseFormat(engineName: str, options: BackupOptions) -> str:
    """The format of C{options} for C{engineName}, the engine's default if none."""
    formats = FORMATS.get(engineName, ())
    if not formats:
        raise BackupRemoteError(VALIDATION_FAILED, f"no backup formats for {engineName}")
    chosen = options.format or formats[0]
    if chosen not in formats:
        raise BackupRemoteError(
            VALIDATION_FAILED, f"{engineName} backups come in format "
            + " or ".join(formats) + f", not {chosen!r}",
            details={"fields": {"format": "must be one of " + ", ".join(formats)}})
    return chosen


async def dumpPlan(engine: IEngine, target: Target, options: BackupOptions, tools: ToolFinder,
                   serverVersion: str | None) -> DumpPlan:
    """
    The plan for dumping C{target}: the dump tool chosen by the engine
    (C{TOOL_MISSING}/C{TOOL_TOO_OLD} if none fits) and its command line.
    Close its C{resources} when the dump has ended.
    """
    format = chooseFormat(engine.name, options)
    choice = await engine.chooseDumpTool(tools, serverVersion)
    builder = _BUILDERS.get(engine.name)
    if builder is None:
        raise BackupRemoteError(VALIDATION_FAILED, f"no dump plan for engine {engine.name}")
    return await builder(target, format, choice, tools)


async def _postgresql(target: Target, format: str, choice: Any, tools: ToolFinder) -> DumpPlan:
    restore = await postgresql.chooseRestoreTool(
        tools, Tool("pg_dump", choice.path, choice.version))

    def message(text: str) -> str:
        return postgresql.dumpFailureMessage(text, target)

    if format == "custom":
        check = EngineCheck(
            description="pg_restore", head=lambda head: head.startswith(b"PGDMP"),
            streamArgv=postgresql.restoreCheckArgv(restore.path, full=False),
            fullArgv=lambda scratch: postgresql.restoreCheckArgv(restore.path, full=True),
            env=postgresql.toolEnvironment())
    else:
        check = EngineCheck(description="the plain dump's trailer",
                            trailer=postgresql.PLAIN_DUMP_TRAILER)
    return DumpPlan(
        engine="postgresql", format=format, extension=postgresql.DUMP_EXTENSIONS[format],
        toolName=f"pg_dump {choice.version}", check=check, messageOf=message,
        argv=postgresql.dumpArgv(choice.path, target, format),
        env=postgresql.dumpEnvironment(target))


async def _mariadb(target: Target, format: str, choice: Any, tools: ToolFinder) -> DumpPlan:
    resources = ExitStack()
    optionsPath = resources.enter_context(mariadb.optionsFile(target.password))

    def message(text: str) -> str:
        return mariadb.dumpFailureMessage(text, target)

    check = EngineCheck(description="the dump's trailer", trailer=mariadb.DUMP_TRAILER)
    return DumpPlan(
        engine="mariadb", format=format, extension=".sql",
        toolName=f"{choice.name} {choice.version}", check=check, messageOf=message,
        argv=mariadb.dumpArgv(choice.path, optionsPath, target),
        env=mariadb.clientEnvironment(optionsPath), resources=resources)


async def _sqlite(target: Target, format: str, choice: Any, tools: ToolFinder) -> DumpPlan:
    if not target.path:
        raise BackupRemoteError(VALIDATION_FAILED, "the configuration names no database file")
    check = EngineCheck(description="SQLite's integrity check",
                        head=lambda head: head.startswith(sqlite.SQLITE_HEADER),
                        integrity=True)
    return DumpPlan(
        engine="sqlite", format=format, extension=".sqlite",
        toolName=f"sqlite3 backup API {choice.version}", check=check, messageOf=str,
        sqlitePath=target.path)


async def _firebird(target: Target, format: str, choice: Any, tools: ToolFinder) -> DumpPlan:
    gbak = choice.path

    def message(text: str) -> str:
        return firebird.dumpFailureMessage(text, target)

    # The restore check is embedded (a scratch file in the run folder): the
    # user is SYSDBA, no password; the operator's Firebird settings apply.
    check = EngineCheck(
        description="a gbak restore", head=firebird.looksLikeGbakBackup,
        fullArgv=lambda scratch: firebird.restoreCheckArgv(gbak, scratch),
        fullScratchSuffix=".fdb",
        env=firebird.firebirdEnvironment(Target(engine="firebird", path="/")))
    return DumpPlan(
        engine="firebird", format=format, extension=".fbk",
        toolName=f"gbak {choice.version}", check=check, messageOf=message,
        argv=firebird.dumpArgv(gbak, target), env=firebird.firebirdEnvironment(target))


_BUILDERS = {
    "postgresql": _postgresql,
    "mariadb": _mariadb,
    "sqlite": _sqlite,
    "firebird": _firebird,
}
