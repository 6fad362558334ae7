"""
``backupremote runs list`` and ``runs show RUNID``: the history of the runs
this client drove, from its own store (no server is asked, except to turn
a configuration's name given to ``--db`` into its id).

A run's C{state} in JSON and tables is the job's, with one mapping: a job
that was delivered and then had the server's staging released (the last
step, stored as C{released}) shows as C{delivered}, with C{"released":
true}. So the final success of a run is C{delivered} (DESIGN.md), and
C{--state delivered} finds both.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from backupremote.cli.clientconfig import commandConfig
from backupremote.cli.output import Output, whatToDo
from backupremote.client.api import RUN_NOT_FOUND_HINT
from backupremote.cli.progress import duration, size
from backupremote.client.jobs import CANCELLED, FAILED, STATES, Job, JobStore, now
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.store import SQLiteClientStore
from backupremote.configfile import configError
from backupremote.protocol.errors import NOT_FOUND, BackupRemoteError

if TYPE_CHECKING:
    from backupremote.reactors import ITransferReactor

UTC = timezone.utc
#: What C{--state} accepts: the shown states (the stored ones, C{released} included).
SHOWN_STATES = tuple(s for s in STATES if s != "released") + (FAILED, CANCELLED, "released")


def shownState(job: Job) -> str:
    """The run's state as shown: C{released} is C{delivered} (with C{released: true})."""
    return "delivered" if job.state == "released" else job.state


def storedStates(shown: list[str]) -> tuple[str, ...]:
    states: list[str] = []
    for state in shown:
        states += ["delivered", "released"] if state == "delivered" else [state]
    return tuple(states)


def register(commands: Any) -> None:
    runs = commands.add_parser(
        "runs", help="the history of this client's runs, from its own store",
        epilog="example: backupremote runs list --schedule nightly --since 7d",
    )
    sub = runs.add_subparsers(dest="action", required=True)
    listing = sub.add_parser(
        "list", help="runs, newest first: start, duration, size, state, stage, destinations",
        epilog="example: backupremote runs list --state failed --since 2026-11-01 --json",
    )
    listing.add_argument("--schedule", metavar="S", help="a schedule's name or id")
    listing.add_argument("--db", metavar="D",
                         help="a database configuration's id, or its name (asked of the server)")
    listing.add_argument("--state", action="append", default=[], choices=SHOWN_STATES,
                         help="only runs in this state (repeatable); delivered includes "
                         "released")
    listing.add_argument("--since", metavar="T",
                         help="only runs started since T: a date (2026-11-01), a date and "
                         "time, or a span back from now (24h, 7d)")
    listing.add_argument("--limit", type=int, default=50, metavar="N",
                         help="at most N runs (default 50; 0: all)")
    listing.set_defaults(onReactor=_withJobs(listCommand))
    show = sub.add_parser("show", help="one run: its steps, its artifact and its receipts",
                          epilog="example: backupremote runs show 0b8e... --json")
    show.add_argument("run_id", metavar="RUNID")
    show.set_defaults(onReactor=_withJobs(showCommand))


def _withJobs(command: Any) -> Any:
    async def run(reactor: ITransferReactor, args: argparse.Namespace, output: Output) -> int:
        config = commandConfig(args)
        assert config.dataDir is not None
        store: Any = SQLiteClientStore.inFolder(config.dataDir, reactor)
        try:
            await store.opened()
            code: int = await command(config, JobStore(store, now(reactor)),
                                      ScheduleStore(store), args, output, reactor)
            return code
        finally:
            await store.close()

    return run


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def runJSON(job: Job, scheduleName: str | None = None) -> dict[str, Any]:
    """A run as scripts read it (docs/cli.md, "runs list")."""
    finished = job.finished
    status = job.status
    return {
        "runId": job.runId, "scheduleId": job.scheduleId, "schedule": scheduleName,
        "server": job.server, "databaseConfigId": job.databaseConfigId,
        "state": shownState(job), "storedState": job.state, "goal": job.goal,
        "released": job.state == "released", "fireTime": _iso(job.fireTime),
        "startedAt": _iso(job.createdAt), "endedAt": _iso(job.updatedAt) if finished else None,
        "durationSeconds": (job.updatedAt - job.createdAt).total_seconds() if finished else None,
        "stage": status.stage if status is not None else None,
        "serverState": status.state if status is not None else None,
        "sizeBytes": job.artifact.sizeBytes if job.artifact is not None else None,
        "sha256": job.artifact.sha256 if job.artifact is not None else None,
        "destinations": [d.name for d in job.destinations],
        "failedStep": job.failedStep, "errorCode": job.errorCode,
        "errorMessage": job.errorMessage,
        "receipts": [{"destination": r.destination, "name": r.name, "size": r.size,
                      "sha256": r.sha256, "method": r.method,
                      "verifiedAt": _iso(r.verifiedAt)} for r in job.receipts],
    }


def _local(value: datetime) -> str:
    return f"{value.astimezone():%Y-%m-%d %H:%M:%S}"


def describeJob(job: Job, scheduleName: str | None = None,
                steps: list[tuple[str, datetime, str | None]] | None = None) -> str:
    data = runJSON(job, scheduleName)
    lines = [f"run {job.runId}: {data['state']}"
             + (" (staging released)" if data["released"] else "")
             + (f", failed at {job.failedStep}" if job.failedStep else "")]
    if job.errorCode:
        lines.append(f"  error {job.errorCode}: {job.errorMessage}"
                     + whatToDo(job.errorCode, "    "))
    lines.append(f"  schedule:     {scheduleName or job.scheduleId or '- (started by hand)'}"
                 + (f", slot {_iso(job.fireTime)}" if job.fireTime else ""))
    lines.append(f"  database:     {job.databaseConfigId or '-'} on server {job.server}")
    lines.append(f"  started:      {_local(job.createdAt)}"
                 + (f", took {duration(data['durationSeconds'])}" if job.finished else
                    ", not ended"))
    if data["stage"]:
        lines.append(f"  on the server: {data['serverState']} (stage {data['stage']})")
    if job.artifact is not None:
        lines.append(f"  artifact:     {job.artifact.name}, {size(job.artifact.sizeBytes)}, "
                     f"sha256 {job.artifact.sha256}")
    for receipt in job.receipts:
        lines.append(f"  delivered:    {receipt.destination}: {receipt.name}, "
                     f"{size(receipt.size)}, {receipt.method}, {_local(receipt.verifiedAt)}")
    if not job.receipts:
        lines.append("  delivered:    " + (", ".join(data["destinations"]) or
                                          "- (no destination)"))
    for state, at, detail in steps or []:
        lines.append(f"    {_local(at)}  {state:<10} {detail or ''}".rstrip())
    return "\n".join(lines)


async def _scheduleNames(schedules: ScheduleStore) -> dict[str, str]:
    return {schedule.id: schedule.name for schedule in await schedules.list()}


def parseSince(text: str, at: datetime) -> datetime:
    """C{2026-11-01}, C{2026-11-01T03:00} (local unless it names an offset), C{24h}, C{7d}."""
    from backupremote.cli.schedules import parseDuration
    from backupremote.client.schedules.validation import Problems

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problems = Problems()
        seconds = parseDuration(text, "since", problems)
        if seconds is None:
            raise configError(f"--since {text!r} is not a date, a date and time, or a span "
                              "like 24h or 7d") from None
        return datetime.fromtimestamp(at.timestamp() - seconds, UTC)
    return value.astimezone(UTC) if value.tzinfo else value.astimezone().astimezone(UTC)


async def listCommand(config: Any, jobs: JobStore, schedules: ScheduleStore,
                      args: argparse.Namespace, output: Output, reactor: ITransferReactor) -> int:
    names = await _scheduleNames(schedules)
    scheduleId = None
    if args.schedule is not None:
        try:
            scheduleId = (await schedules.get(args.schedule)).id
        except BackupRemoteError as error:
            if error.code != NOT_FOUND:
                raise
            scheduleId = args.schedule  # a removed schedule's id: its runs are kept
    server = getattr(args, "server", None)
    if server is not None:
        config.pickServer(server)
    since = parseSince(args.since, datetime.now(UTC)) if args.since else None
    query: dict[str, Any] = dict(scheduleId=scheduleId, server=server, states=storedStates(args.state),
                 since=since, limit=args.limit or None)
    found = await jobs.history(databaseConfigId=args.db, **query)
    if args.db is not None and not found:
        databaseId = await _databaseId(config, server, args.db, reactor)
        if databaseId != args.db:
            found = await jobs.history(databaseConfigId=databaseId, **query)
    rows = [runJSON(job, names.get(job.scheduleId or "")) for job in found]
    lines = [f"{'STARTED':<19}  {'TOOK':>8}  {'SIZE':>9}  {'STATE':<10} {'STAGE':<13} "
             f"{'SCHEDULE':<16} {'DELIVERED TO':<20} RUN"]
    for job, row in zip(found, rows):
        delivered = ", ".join(r["destination"] for r in row["receipts"]) or (
            "-" if not row["destinations"] else "(" + ", ".join(row["destinations"]) + ")")
        lines.append(
            f"{_local(job.createdAt):<19}  "
            f"{duration(row['durationSeconds']) if row['durationSeconds'] is not None else '-':>8}"
            f"  {size(row['sizeBytes']) if row['sizeBytes'] is not None else '-':>9}  "
            f"{row['state']:<10} {row['stage'] or '-':<13} "
            f"{(row['schedule'] or ('-' if not job.scheduleId else job.scheduleId[:8])):<16} "
            f"{delivered:<20} {job.runId}")
    output.result(rows, "\n".join(lines) if rows else
                  "no runs match (this client's store keeps the runs it drove)")
    return 0


async def _databaseId(config: Any, server: str | None, db: str, reactor: ITransferReactor) -> str:
    """A configuration's id from its name, asked of the server."""
    from backupremote.cli.databases import configIdOf
    from backupremote.client.api import BackupRemoteClient

    client = BackupRemoteClient.fromConfig(reactor, config.forServer(config.pickServer(server)))
    client.connection.service.startService()
    try:
        return await configIdOf(client, db)
    finally:
        await client.close()


async def showCommand(config: Any, jobs: JobStore, schedules: ScheduleStore,
                      args: argparse.Namespace, output: Output, reactor: ITransferReactor) -> int:
    job = await jobs.get(args.run_id)
    if job is None:
        raise BackupRemoteError(NOT_FOUND, f"this client has no run {args.run_id}",
                                hint=RUN_NOT_FOUND_HINT)
    names = await _scheduleNames(schedules)
    steps = await jobs.steps(job.runId)
    data = runJSON(job, names.get(job.scheduleId or ""))
    data["steps"] = [{"state": state, "at": _iso(at), "detail": detail}
                     for state, at, detail in steps]
    output.result(data, describeJob(job, data["schedule"], steps))
    return 0
