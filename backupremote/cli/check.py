"""
``backupremote check``: is everything a backup needs ready, now? Without a
running daemon: it reads client.toml, logs in to each server itself, and
tests the destinations from the client's own store (see
L{backupremote.client.check} for what each check does).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import EXIT_OK, Output, exitCodeFor
from backupremote.client.check import (
    BLOCKER,
    CONFIG,
    DESTINATION,
    OK,
    WARNING,
    Checker,
    CheckReport,
    Finding,
)
from backupremote.client.config import ClientConfig, loadClientConfig
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.servers import ClientServers
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

if TYPE_CHECKING:
    from backupremote.reactors import IDestinationReactor

HELP = "configuration, servers, licences (days left), databases, destinations, clock skew"

DESCRIPTION = """\
Check everything a backup needs, now, without the client daemon: client.toml
is valid; each server is reachable over TLS with the pinned certificate, this
client logs in and its licence is valid (days left; a warning within 30 days);
the clocks of client and server agree; each database configuration passes its
connection test and preflight on the server; each destination passes its
connection test. Every problem is a warning or a blocker with its error code
and what to do. Exit 0 without blockers (warnings allowed), else the exit code
of the first blocker listed: 3 configuration, 4 login or licence, 5 server not
reachable or TLS, 6 database, preflight, destination or clock."""

EXAMPLE = """\
example:
  backupremote --config ~/.backupremote/client.toml check
  backupremote check --server db-east --json | jq '.checks[] | select(.status != "ok")'"""


def register(commands: Any) -> None:
    check = commands.add_parser(
        "check", help=HELP, description=DESCRIPTION, epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--no-databases", action="store_true",
                       help="skip the database configurations' connection tests and "
                       "preflights (they run on the server and can take a while)")
    check.set_defaults(onReactor=checkCommand)


def exitCodeOf(report: CheckReport) -> int:
    """0 without blockers, else the exit code of the first blocker's error class."""
    for finding in report.blockers:
        return exitCodeFor(BackupRemoteError(finding.code or CONFIG_INVALID, finding.detail))
    return EXIT_OK


_STATUS = {OK: "ok", WARNING: "WARNING", BLOCKER: "BLOCKER"}


def describeReport(report: CheckReport) -> str:
    """A table for people: check, subject, status, detail; what to do under each problem."""
    rows = [("CHECK", "SUBJECT", "STATUS", "DETAIL")] + [
        (f.check, f.subject, _STATUS[f.status],
         f"{f.code}: {f.detail}" if f.code and f.status != OK else f.detail)
        for f in report.findings]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths))
                     + "  " + row[3])
        action = report.findings[index - 1].action if index else None
        if action:
            lines.append(" " * (sum(widths) + 6) + f"what to do: {action}")
    blockers, warnings = len(report.blockers), len(report.warnings)
    summary = f"{blockers} blocker{'' if blockers == 1 else 's'}, " \
              f"{warnings} warning{'' if warnings == 1 else 's'}"
    lines.append("")
    lines.append(f"ready: {summary}" if report.ok
                 else f"NOT ready: {summary} (exit code {exitCodeOf(report)})")
    return "\n".join(lines)


async def checkCommand(reactor: IDestinationReactor, args: argparse.Namespace,
                       output: Output) -> int:
    report = await runChecks(reactor, args.config, getattr(args, "server", None),
                             databases=not args.no_databases)
    code = exitCodeOf(report)
    output.result(report.asJSON() | {"exitCode": code}, describeReport(report))
    return code


async def runChecks(reactor: IDestinationReactor, path: str | None, server: str | None = None,
                    databases: bool = True) -> CheckReport:
    """Load C{path} (client.toml) and run every check; a bad file is the one finding."""
    if not path:
        return CheckReport((Finding(
            CONFIG, "client.toml", BLOCKER, "no client.toml: give --config FILE, or set "
            "$BACKUPREMOTE_CONFIG, or make ~/.backupremote/client.toml", CONFIG_INVALID),))
    try:
        config = loadClientConfig(FilePath(path))
        names = (config.pickServer(server),) if server else config.serverNames
    except BackupRemoteError as error:
        return CheckReport((Finding.fromError(CONFIG, "client.toml", error),))
    said = f"{path}: valid, server{'' if len(names) == 1 else 's'} {', '.join(names)}"
    findings = [Finding(CONFIG, "client.toml", OK, said + (
        f"; data folder {config.dataDir.path}" if config.dataDir else ""))]
    report = await _check(reactor, config, names, databases)
    return CheckReport(tuple(findings) + report.findings)


async def _check(reactor: IDestinationReactor, config: ClientConfig, names: tuple[str, ...],
                 databases: bool) -> CheckReport:
    servers = ClientServers(reactor, config, ownConnections=True)
    entries = {name: config.serverEntries[name] for name in names}
    checker = Checker(reactor, servers, entries, None, config.notify.licenseDays, databases)
    store = None
    opened: list[Finding] = []
    try:
        if config.dataDir is not None:
            store = SQLiteClientStore.inFolder(config.dataDir, reactor)
            try:
                await store.opened()
            except BackupRemoteError as error:
                opened.append(Finding.fromError(
                    DESTINATION, "(all)", error, prefix="cannot open the client's store: "))
            else:
                checker.destinations = DestinationRegistry.inFolder(
                    reactor, store, config.dataDir)
        report = await checker.run()
    finally:
        await servers.close()
        if store is not None:
            await store.close()
    return CheckReport(report.findings + tuple(opened))
