"""``backupremote db ...`` and ``backupremote preflight``: configurations on the server."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any

from attrs import asdict, evolve

from backupremote.cli.output import EXIT_REFUSED, Output, whatToDo
from backupremote.cli.remote import withClient
from backupremote.client.api import BackupRemoteClient
from backupremote.configfile import configError
from backupremote.protocol.errors import NOT_FOUND, VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.databases import (
    ENGINES,
    ConnectionTestResult,
    DatabaseConfig,
    DatabaseConfigInput,
    PreflightReport,
)
from backupremote.protocol.options import CHECKSUMS, COMPRESSIONS, VERIFICATIONS
from backupremote.protocol.structured import converter

_CONNECTION = ("host", "port", "database", "user", "path")
_BACKUP = {"format": "format", "compression": "compression", "level": "level",
           "threads": "threads", "checksum": "checksum", "verification": "verification",
           "post_script": "postScript", "timeout": "timeoutSeconds"}


def _configArguments(parser: argparse.ArgumentParser, engineRequired: bool) -> None:
    parser.add_argument("--engine", choices=ENGINES, required=engineRequired)
    parser.add_argument("--host", help="database host, as the server sees it")
    parser.add_argument("--port", type=int, help="database port (default: the engine's)")
    parser.add_argument("--database", help="database name (Firebird: path or alias on its server)")
    parser.add_argument("--user", help="database user the server connects as")
    parser.add_argument("--path", help="database file on the server (SQLite, local Firebird)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin")
    parser.add_argument("--remove-password", action="store_true",
                        help="drop the stored password")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an engine option, e.g. sslmode=require (repeatable)")
    defaults = parser.add_argument_group("default backup options")
    backupArguments(defaults)


def backupArguments(group: Any) -> None:
    """The backup options, as flags (shared by db add/update, preflight and run)."""
    group.add_argument("--format", help="postgresql: custom (default) or plain; mariadb: sql; "
                       "sqlite: file; firebird: fbk")
    group.add_argument("--compression", choices=COMPRESSIONS)
    group.add_argument("--level", type=int, help="compression level (zstd 1-19, gzip 1-9, "
                       "xz 0-9, zip 0-9)")
    group.add_argument("--threads", type=int, help="compressor threads (0: all cores)")
    group.add_argument("--checksum", choices=CHECKSUMS)
    group.add_argument("--verification", choices=VERIFICATIONS,
                       help="none, stream (read back and check) or full (engine restore check)")
    group.add_argument("--post-script", metavar="NAME",
                       help="a script from the server's allowlist, run after the backup")
    group.add_argument("--timeout", type=int, metavar="SECONDS",
                       help="give up the backup after this many seconds")


def register(commands: Any) -> None:
    db = commands.add_parser(
        "db", help="database configurations kept on the server",
        epilog="example: backupremote --config client.toml db add shop --engine postgresql "
        "--host 127.0.0.1 --database shop --user backup --password-stdin < pw.txt",
    )
    sub = db.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="store a new configuration on the server",
                         epilog="example: backupremote db add notes --engine sqlite "
                         "--path /srv/notes.sqlite3")
    add.add_argument("name")
    add.add_argument("--no-test", action="store_true",
                     help="store it without testing the connection from the server")
    _configArguments(add, engineRequired=True)
    add.set_defaults(onReactor=withClient(addCommand))
    listing = sub.add_parser("list", help="list the configurations",
                             epilog="example: backupremote db list --json")
    listing.set_defaults(onReactor=withClient(listCommand))
    show = sub.add_parser("show", help="show one configuration",
                          epilog="example: backupremote db show 6f1c...")
    show.add_argument("id", help=ID_HELP)
    show.set_defaults(onReactor=withClient(showCommand))
    update = sub.add_parser("update", help="change a configuration (other fields kept)",
                            epilog="example: backupremote db update 6f1c... --port 5433")
    update.add_argument("id", help=ID_HELP)
    update.add_argument("--name")
    update.add_argument("--version", type=int,
                        help="refuse the change unless the stored version is this one")
    _configArguments(update, engineRequired=False)
    update.set_defaults(onReactor=withClient(updateCommand))
    remove = sub.add_parser("remove", help="delete a configuration",
                            epilog="example: backupremote db remove 6f1c...")
    remove.add_argument("id", help=ID_HELP)
    remove.add_argument("--version", type=int)
    remove.set_defaults(onReactor=withClient(removeCommand))
    test = sub.add_parser("test", help="test the connection from the server",
                          epilog="example: backupremote db test 6f1c...   or   backupremote "
                          "db test --engine postgresql --host db1 --database shop --user b "
                          "--password-stdin")
    test.add_argument("id", nargs="?", help=ID_HELP)
    test.add_argument("--name", default="unsaved")
    _configArguments(test, engineRequired=False)
    test.set_defaults(onReactor=withClient(testCommand))
    preflight = commands.add_parser(
        "preflight", help="blockers and warnings for a backup of a configuration",
        epilog="example: backupremote --config client.toml preflight 6f1c... --compression xz",
    )
    preflight.add_argument("id", help=ID_HELP)
    backupArguments(preflight)
    preflight.set_defaults(onReactor=withClient(preflightCommand))


ID_HELP = "the database configuration's id, or its name"


async def configIdOf(client: BackupRemoteClient, idOrName: str) -> str:
    """The id of the configuration whose id, or else name, is C{idOrName}."""
    configs = await client.allDatabaseConfigs()
    for config in configs:
        if config.id == idOrName:
            return config.id
    named = [config for config in configs if config.name == idOrName]
    if len(named) > 1:
        # only an admin sees several: names are unique per owning client
        choices = ", ".join(f"{c.id} (owner {c.owner or 'none'})" for c in named)
        raise BackupRemoteError(VALIDATION_FAILED, f"{len(named)} database configurations "
                                f"are named {idOrName!r}: {choices}; give the id")
    if named:
        return named[0].id
    close = difflib.get_close_matches(idOrName, sorted({c.name for c in configs}), n=3)
    guess = f"did you mean {' or '.join(f'`{name}`' for name in close)}? " if close else ""
    raise BackupRemoteError(NOT_FOUND, f"no database configuration has the id or name "
                            f"{idOrName!r}; {guess}`backupremote db list` shows them",
                            details={"didYouMean": close} if close else {})


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise configError(f"--option {pair!r} is not KEY=VALUE")
        options[key] = value
    return options


def _password(args: argparse.Namespace) -> str | None:
    if not getattr(args, "password_stdin", False):
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise configError("--password-stdin read an empty line")
    return line


def _backupChanges(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, name) for name, field in _BACKUP.items()
            if getattr(args, name, None) is not None}


def _input(args: argparse.Namespace, base: DatabaseConfigInput) -> DatabaseConfigInput:
    changes: dict[str, Any] = {name: getattr(args, name) for name in _CONNECTION
                               if getattr(args, name, None) is not None}
    if getattr(args, "name", None):
        changes["name"] = args.name
    if args.engine:
        changes["engine"] = args.engine
    if args.option:
        changes["options"] = base.options | _options(args.option)
    changes["password"] = _password(args)
    changes["removePassword"] = args.remove_password
    return evolve(base, backup=evolve(base.backup, **_backupChanges(args)), **changes)


def describe(config: DatabaseConfig) -> str:
    where = config.path or f"{config.user}@{config.host}:{config.port}/{config.database}"
    backup = config.backup
    return "\n".join([
        f"{config.name}  ({config.engine}, id {config.id}, version {config.version})",
        f"  database:  {where}",
        f"  password:  {'stored (encrypted on the server)' if config.hasPassword else 'none'}",
        f"  options:   {', '.join(f'{k}={v}' for k, v in sorted(config.options.items())) or '-'}",
        f"  backups:   {backup.compression}"
        + (f" level {backup.level}" if backup.level is not None else "")
        + f", {backup.checksum}, verification {backup.verification}"
        + (f", format {backup.format}" if backup.format else ""),
    ])


async def addCommand(client: BackupRemoteClient, args: argparse.Namespace, output: Output) -> int:
    base = DatabaseConfigInput(name=args.name, engine=args.engine)
    created = await client.createDatabaseConfig(_input(args, base))
    human = f"stored on the server:\n{describe(created)}"
    if args.no_test:
        output.result(created, human + f"\nnot tested: `backupremote db test {created.name}`")
        return 0
    try:
        tested = await client.testDatabaseConnection(configId=created.id)
    except BackupRemoteError as error:
        # stored all the same: say why it was not tested, and how to test it
        tested = ConnectionTestResult(ok=False, reason=error.code, message=error.message)
    human += f"\ntest from the server: {describeTest(tested)}"
    if not tested.ok:
        human += (f"\nthe configuration is stored all the same: fix it with `backupremote db "
                  f"update {created.name} ...`, then `backupremote db test {created.name}`")
    output.result(converter.unstructure(created) | {"connectionTest": tested}, human)
    return 0


async def listCommand(client: BackupRemoteClient, args: argparse.Namespace, output: Output) -> int:
    configs = await client.allDatabaseConfigs()
    last = await lastBackups(client, args)
    owners = {c.owner for c in configs}  # more than one: an admin's list
    lines = [f"{c.id}  {c.engine:<10}  {c.name}"
             + (f"  (owner {c.owner or 'none'})" if len(owners) > 1 else "")
             + f"  {describeLast(last.get(c.id))}" for c in configs]
    data = [converter.unstructure(c) | {"lastBackup": lastJSON(last.get(c.id))}
            for c in configs]
    output.result(data, "\n".join(lines) if lines else "no database configurations yet "
                  "(add one with `backupremote db add`)")
    return 0


async def lastBackups(client: BackupRemoteClient, args: argparse.Namespace) -> dict[str, Any]:
    """The newest job of each configuration on this server, from the client's store."""
    from twisted.python.filepath import FilePath

    from backupremote.client.config import loadClientConfig

    config = loadClientConfig(FilePath(args.config))
    if config.dataDir is None or not config.dataDir.exists():
        return {}
    from backupremote.client.jobs.store import JobStore, now
    from backupremote.client.store import SQLiteClientStore

    from twisted.internet.interfaces import IReactorFromThreads

    # the connection's reactor (typed by its timers) is the command's: ask for its threads
    reactor = client.connection.reactor
    store: Any = SQLiteClientStore.inFolder(config.dataDir, IReactorFromThreads(reactor))
    try:
        found: dict[str, Any] = await JobStore(store, now(reactor)).lastPerDatabase(
            config.pickServer(getattr(args, "server", None)))
        return found
    finally:
        await store.close()


def lastJSON(job: Any) -> dict[str, Any] | None:
    """A configuration's last backup as ``db list --json`` shows it."""
    if job is None:
        return None
    from backupremote.cli.history import runJSON

    run = runJSON(job)
    return {key: run[key] for key in ("runId", "state", "startedAt", "endedAt", "sizeBytes",
                                      "scheduleId", "errorCode")}


def describeLast(job: Any) -> str:
    if job is None:
        return "no backup by this client yet"
    from backupremote.cli.history import shownState

    return f"last backup {job.createdAt.astimezone():%Y-%m-%d %H:%M} {shownState(job)}"


async def showCommand(client: BackupRemoteClient, args: argparse.Namespace, output: Output) -> int:
    config = await client.getDatabaseConfig(await configIdOf(client, args.id))
    output.result(config, describe(config))
    return 0


def _asInput(config: DatabaseConfig) -> DatabaseConfigInput:
    """The stored fields as an input to send back (the password stays as stored)."""
    names = {a.name for a in DatabaseConfigInput.__attrs_attrs__} - {"password", "removePassword"}
    return DatabaseConfigInput(**{k: v for k, v in asdict(config, recurse=False).items()
                                  if k in names})


async def updateCommand(client: BackupRemoteClient, args: argparse.Namespace, output: Output) -> int:
    args.id = await configIdOf(client, args.id)
    current = await client.getDatabaseConfig(args.id)
    version = current.version if args.version is None else args.version
    updated = await client.updateDatabaseConfig(args.id, version, _input(args, _asInput(current)))
    output.result(updated, f"updated:\n{describe(updated)}")
    return 0


async def removeCommand(client: BackupRemoteClient, args: argparse.Namespace, output: Output) -> int:
    args.id = await configIdOf(client, args.id)
    await client.deleteDatabaseConfig(args.id, args.version)
    output.result({"id": args.id}, f"deleted {args.id}")
    return 0


def describeTest(result: ConnectionTestResult) -> str:
    if not result.ok:
        return f"connection failed: {result.reason}: {result.message}" + whatToDo(result.reason)
    parts = [f"connection ok: {result.serverVersion or 'unknown version'}"]
    if result.latencyMs is not None:
        parts.append(f"{result.latencyMs:.0f} ms")
    if result.sizeBytes is not None:
        parts.append(f"about {result.sizeBytes / 1e6:.1f} MB")
    if result.tool:
        parts.append(f"via {result.tool}")
    if result.sizeBytes is None:
        return ", ".join(parts) + f"\n  {result.message}"
    return ", ".join(parts)


async def testCommand(client: BackupRemoteClient, args: argparse.Namespace, output: Output) -> int:
    if args.id:
        result = await client.testDatabaseConnection(configId=await configIdOf(client, args.id))
    else:
        if not args.engine:
            raise configError("give a configuration id, or --engine and the connection fields")
        base = DatabaseConfigInput(name=args.name, engine=args.engine)
        result = await client.testDatabaseConnection(config=_input(args, base))
    output.result(result, describeTest(result))
    return 0 if result.ok else EXIT_REFUSED


def describePreflight(report: PreflightReport) -> str:
    lines = ["ready to back up" if report.ok else "not ready:"]
    lines += [f"  blocker {f.code}: {f.message}" + whatToDo(f.code, "    ")
              for f in report.blockers]
    lines += [f"  warning {f.code}: {f.message}" + whatToDo(f.code, "    ")
              for f in report.warnings]
    if report.dumpTool:
        lines.append(f"  dump tool: {report.dumpTool.path} ({report.dumpTool.reason})")
    if report.compressionTool:
        lines.append(f"  compressor: {report.compressionTool.path} ({report.compressionTool.version})")
    if report.sizeEstimate is not None:
        lines.append(f"  size estimate: {report.sizeEstimate / 1e6:.1f} MB")
    if report.freeBytes is not None:
        lines.append(f"  free in the server's temp folder: {report.freeBytes / 1e9:.1f} GB")
    return "\n".join(lines)


async def preflightCommand(client: BackupRemoteClient, args: argparse.Namespace,
                           output: Output) -> int:
    args.id = await configIdOf(client, args.id)
    changes = _backupChanges(args)
    options = None
    if changes:
        current = await client.getDatabaseConfig(args.id)
        options = evolve(current.backup, **changes)
    report = await client.preflight(args.id, options)
    output.result(report, describePreflight(report))
    return 0 if report.ok else EXIT_REFUSED

