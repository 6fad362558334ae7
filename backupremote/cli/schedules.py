"""
``backupremote schedule ...``: the client's schedules, kept in its store.

``add`` and ``update`` ask the server for the database configuration (its
name or id becomes its id, C{NOT_FOUND} otherwise) when they need it; the
other commands work on the store alone, daemon running or not (the daemon
sees a change within its reconciliation interval).
"""

from __future__ import annotations

import argparse
import os
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from attrs import evolve
from twisted.internet.task import deferLater

from backupremote.cli.clientconfig import commandConfig, openedStore
from backupremote.cli.databases import backupArguments, configIdOf
from backupremote.cli.output import EXIT_REFUSED, Output
from backupremote.cli.history import describeJob, runJSON
from backupremote.cli.jobs import JobView
from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig
from backupremote.client.schedules.model import (
    OVERLAP_POLICIES,
    WEEKDAYS,
    Cron,
    Daily,
    Interval,
    Monthly,
    Rule,
    Schedule,
    Weekly,
    describeRule,
    parseTime,
    scheduleConverter,
)
from backupremote.client.schedules.nextfire import nextFire, zoneNamed
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.jobs import JobObserver, JobRequest, JobStore, jobRunnerIn, now
from backupremote.client.jobs.locks import DaemonLock
from backupremote.client.schedules.scheduler import runNowRequest
from backupremote.client.schedules.starter import jobRequest
from backupremote.client.servers import ClientServers
from backupremote.client.schedules.store import FireRecord, ScheduleStore
from backupremote.client.schedules.validation import Problems, validateSchedule
from backupremote.protocol.errors import CONFLICT, VALIDATION_FAILED, BackupRemoteError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime
    from backupremote.reactors import IDestinationReactor, ITransferReactor

UTC = timezone.utc
#: Seconds between two looks at a job the daemon drives (C{run-now --wait}).
WAIT_POLL = 0.5
_OPTIONS = {"format": "format", "compression": "compression", "level": "level",
            "threads": "threads", "checksum": "checksum", "verification": "verification",
            "post_script": "postScript", "timeout": "timeoutSeconds"}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
NAME_HELP = "the schedule's name, or its id"


def register(commands: Any) -> None:
    schedule = commands.add_parser(
        "schedule", help="the client's schedules (fired by the client daemon)",
        epilog="example: backupremote --config client.toml schedule add nightly --db shop "
        "--daily 02:30 --tz Europe/Berlin --compression zstd",
    )
    sub = schedule.add_subparsers(dest="action", required=True)
    add = sub.add_parser(
        "add", help="add a schedule",
        epilog="example: backupremote schedule add nightly --db shop --daily 02:30,14:30 "
        "--tz Europe/Berlin --dest nas   |   --every 15m   |   --weekly mon,thu@03:00   |   "
        "--monthly 1,15,last@04:00   |   --cron '30 2 * * 1-5'",
    )
    add.add_argument("name")
    add.add_argument("--db", required=True, metavar="DB",
                     help="the database configuration's name or id on the server")
    _ruleArguments(add, required=True)
    _scheduleArguments(add)
    add.add_argument("--disabled", action="store_true", help="store it disabled")
    backupArguments(add.add_argument_group(
        "backup options (default: the configuration's, at each run)"))
    add.set_defaults(onReactor=_withSchedules(_countingRefusals("create", addCommand)))

    listing = sub.add_parser("list", help="list the schedules with their next fire",
                             epilog="example: backupremote schedule list --json")
    listing.set_defaults(onReactor=_withSchedules(listCommand))

    show = sub.add_parser("show", help="one schedule, its next fires and its recent slots",
                          epilog="example: backupremote schedule show nightly")
    show.add_argument("name", help=NAME_HELP)
    show.add_argument("--fires", type=int, default=10, metavar="N",
                      help="how many recent slots to list (default 10)")
    show.set_defaults(onReactor=_withSchedules(showCommand))

    update = sub.add_parser(
        "update", help="change a schedule (what is not given is kept)",
        epilog="example: backupremote schedule update nightly --daily 03:15 --tz UTC",
    )
    update.add_argument("name", help=NAME_HELP)
    update.add_argument("--name", dest="new_name", metavar="NEW", help="rename it")
    update.add_argument("--db", metavar="DB", help="another database configuration")
    update.add_argument("--revision", type=int,
                        help="refuse the change unless the stored revision is this one")
    update.add_argument("--no-dest", action="store_true",
                        help="remove every destination (before adding --dest ones)")
    update.add_argument("--config-options", action="store_true",
                        help="go back to the configuration's backup options")
    _ruleArguments(update, required=False)
    _scheduleArguments(update)
    backupArguments(update.add_argument_group("backup options"))
    update.set_defaults(onReactor=_withSchedules(_countingRefusals("update", updateCommand)))

    for action, verb in (("remove", "delete"), ("enable", "enable"), ("disable", "disable")):
        parser = sub.add_parser(action, help=f"{verb} a schedule",
                                epilog=f"example: backupremote schedule {action} nightly")
        parser.add_argument("name", help=NAME_HELP)
        parser.set_defaults(onReactor=_withSchedules(
            removeCommand if action == "remove" else _enabling(action == "enable")))

    runNow = sub.add_parser(
        "run-now", help="start a run of a schedule now, with a fresh runId",
        epilog="example: backupremote schedule run-now nightly --wait",
    )
    runNow.add_argument("name", help=NAME_HELP)
    runNow.add_argument("--wait", action="store_true",
                        help="follow the run until it is delivered (or fails); without a "
                        "running client daemon this command drives the run to its end "
                        "either way")
    runNow.set_defaults(onReactor=_withSchedules(runNowCommand))


def _ruleArguments(parser: argparse.ArgumentParser, required: bool) -> None:
    when = parser.add_mutually_exclusive_group(required=required)
    when.add_argument("--cron", metavar="EXPR",
                      help="a 5-field cron expression, like '30 2 * * 1-5'")
    when.add_argument("--every", metavar="DURATION",
                      help="an interval of at least 1 minute: 15m, 2h, 1h30m, 1d")
    when.add_argument("--daily", metavar="HH:MM[,HH:MM]", help="every day at these times")
    when.add_argument("--weekly", metavar="DAYS@HH:MM",
                      help="on these days at a time: mon,thu@02:00")
    when.add_argument("--monthly", metavar="DAYS@HH:MM",
                      help="on these days of the month at a time: 1,15,last@03:00 (a day a "
                      "month lacks fires on its last day)")
    parser.add_argument("--anchor", metavar="TIME",
                        help="with --every: an instant the fires align to (default: midnight "
                        "today in the schedule's zone)")


def _scheduleArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tz", metavar="ZONE",
                        help="an IANA time zone, like Europe/Berlin (default: this machine's)")
    parser.add_argument("--dest", action="append", default=[], metavar="NAME",
                        help="a destination to deliver to (repeatable)")
    parser.add_argument("--server", dest="schedule_server", metavar="NAME",
                        help="the server of client.toml to run on (default: the only one)")
    parser.add_argument("--start", metavar="TIME",
                        help="no fire before this date or time (in the schedule's zone)")
    parser.add_argument("--end", metavar="TIME",
                        help="no fire after this date or time (in the schedule's zone)")
    parser.add_argument("--jitter", metavar="DURATION",
                        help="delay each fire by a random 0..DURATION (fixed per slot)")
    parser.add_argument("--grace", metavar="DURATION",
                        help="misfire grace: a fire found late by up to this still runs, "
                        "once (default 1h)")
    parser.add_argument("--overlap", choices=OVERLAP_POLICIES,
                        help="when the previous run is still active: skip the fire (default) "
                        "or queue one")


Command = Callable[[ClientConfig, ScheduleStore, argparse.Namespace, Output,
                    "IDestinationReactor"],
                   Awaitable[int]]


def _withSchedules(command: Command) -> Callable[..., Awaitable[int]]:
    """Run C{command} with the client's schedule store, closed after."""

    async def run(reactor: IDestinationReactor, args: argparse.Namespace, output: Output) -> int:
        config = commandConfig(args)
        async with openedStore(config, reactor) as store:
            return await command(config, ScheduleStore(store), args, output, reactor)

    return run


async def _withClient(config: ClientConfig, reactor: ITransferReactor, server: str,
                      work: Callable[[BackupRemoteClient], Awaitable[Any]]) -> Any:
    client = BackupRemoteClient.fromConfig(reactor, config.forServer(server))
    client.connection.service.startService()  # this one-shot command owns the connection
    try:
        return await work(client)
    finally:
        await client.close()


def serverNames(config: ClientConfig) -> set[str]:
    """The servers of client.toml by name."""
    return set(config.serverNames)


# -- parsing the flags


def localZoneName() -> str:
    """This machine's IANA zone: C{$TZ}, else /etc/localtime's link, else UTC."""
    named = os.environ.get("TZ", "").lstrip(":")
    if named:
        return named
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else "UTC"


def parseDuration(text: str, field: str, problems: Problems) -> int | None:
    """C{15m}, C{2h}, C{1h30m}, C{1d}, C{90s} (or plain seconds) in seconds."""
    text = text.strip().lower()
    if text.isascii() and text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        problems.add(field, f"{text!r} is not a duration like 15m, 2h, 1h30m or 1d")
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parseInstant(text: str, zone: str, field: str, problems: Problems) -> datetime | None:
    """A date (its midnight) or a date and time, in C{zone} unless it names an offset."""
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            value = datetime.fromisoformat(text)
    except ValueError:
        problems.add(field, f"{text!r} is not a date (2026-12-01) or a date and time "
                            "(2026-12-01T03:00)")
        return None
    if value.tzinfo is None:
        try:
            value = value.replace(tzinfo=zoneNamed(zone))
        except Exception:
            return None  # the zone's own problem is reported
    return value.astimezone(UTC)


def _days(text: str, field: str, problems: Problems) -> tuple[list[int], bool]:
    days, last = [], False
    for part in text.split(","):
        part = part.strip().lower()
        if part == "last":
            last = True
        elif part.isascii() and part.isdigit():
            days.append(int(part))
        else:
            problems.add(field, f"{part!r} is not a day of the month (1-31 or last)")
    return days, last


def _at(text: str, field: str, problems: Problems) -> tuple[str, Any]:
    head, sep, clock = text.partition("@")
    if not sep:
        problems.add(field, f"{text!r} needs @HH:MM, like mon,thu@02:00")
        return head, None
    try:
        return head, parseTime(clock)
    except ValueError as error:
        problems.add(field, str(error))
        return head, None


def parseRule(args: argparse.Namespace, zone: str, problems: Problems,
              now: datetime) -> Rule | None:
    """The rule the flags name, or C{None} if none does (update keeps its own)."""
    if args.cron is not None:
        return Cron(args.cron.strip())
    if args.every is not None:
        seconds = parseDuration(args.every, "every", problems)
        if seconds is None:
            return None
        if seconds % 60:
            problems.add("every", "must be whole minutes, at least 1m")
            return None
        anchor = None
        if args.anchor is not None:
            anchor = parseInstant(args.anchor, zone, "anchor", problems)
        else:
            try:
                tz = zoneNamed(zone)
                midnight = datetime.combine(now.astimezone(tz).date(), datetime.min.time())
                anchor = midnight.replace(tzinfo=tz).astimezone(UTC)
            except Exception:
                anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return Interval(seconds // 60, anchor) if anchor is not None else None
    if args.daily is not None:
        times = []
        for part in args.daily.split(","):
            try:
                times.append(parseTime(part))
            except ValueError as error:
                problems.add("daily", str(error))
        return Daily(tuple(times))
    if args.weekly is not None:
        head, at = _at(args.weekly, "weekly", problems)
        weekdays = []
        for part in head.split(","):
            part = part.strip().lower()[:3]
            if part in WEEKDAYS:
                weekdays.append(WEEKDAYS.index(part))
            else:
                problems.add("weekly", f"{part!r} is not a day: {','.join(WEEKDAYS)}")
        return Weekly(tuple(weekdays), at) if at is not None else None
    if args.monthly is not None:
        head, at = _at(args.monthly, "monthly", problems)
        days, last = _days(head, "monthly", problems)
        return Monthly(tuple(days), at, last) if at is not None else None
    if args.anchor is not None:
        problems.add("anchor", "goes with --every")
    return None


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    return {field: getattr(args, name) for name, field in _OPTIONS.items()
            if getattr(args, name) is not None}


async def _databaseAndEngine(config: ClientConfig, reactor: ITransferReactor, server: str, db: str,
                             options: dict[str, Any], base: Any) -> tuple[str, str, Any]:
    """The configuration's id and engine, and the options (given ones over C{base})."""

    async def work(client: BackupRemoteClient) -> tuple[str, str, Any]:
        configId = await configIdOf(client, db)
        current = await client.getDatabaseConfig(configId)
        merged = base
        if options:
            merged = evolve(base if base is not None else current.backup, **options)
        return configId, current.engine, merged

    return await _withClient(config, reactor, server, work)


def _common(args: argparse.Namespace, schedule: Schedule, problems: Problems,
            now: datetime) -> Schedule:
    """C{schedule} with the flags every command shares applied."""
    zone = args.tz if args.tz is not None else schedule.zone
    changes: dict[str, Any] = {"zone": zone}
    rule = parseRule(args, zone, problems, now)
    if rule is not None:
        changes["rule"] = rule
    if args.schedule_server is not None:
        changes["server"] = args.schedule_server
    for name in ("start", "end"):
        text = getattr(args, name)
        if text is not None:
            changes[name] = None if text in ("", "none") else parseInstant(
                text, zone, name, problems)
    for flag, field in (("jitter", "jitterSeconds"), ("grace", "misfireGraceSeconds")):
        text = getattr(args, flag)
        if text is not None:
            seconds = parseDuration(text, flag, problems)
            if seconds is not None:
                changes[field] = seconds
    if args.overlap is not None:
        changes["overlap"] = args.overlap
    return evolve(schedule, **changes)


async def _destinationsChecked(config: ClientConfig, schedules: ScheduleStore,
                               schedule: Schedule, reactor: IDestinationReactor) -> Schedule:
    """The hook of issue 12: each destination exists and its type is licensed."""
    from backupremote.client.delivery import licensesOf
    from backupremote.client.delivery.checks import checkScheduleDestinations
    from backupremote.client.destinations.registry import DestinationRegistry
    from backupremote.client.jobs.runner import now

    assert config.dataDir is not None
    registry = DestinationRegistry.inFolder(reactor, schedules._store, config.dataDir)
    return await checkScheduleDestinations(registry, licensesOf(config, now(reactor)),
                                           schedule)


# -- the commands


def _countingRefusals(op: str, command: Any) -> Any:
    """
    C{command}, whose refusals of an invalid or unlicensed schedule are
    counted in the client store (the daemon's C{backupremote_schedule_rejected_total}).
    """

    async def counted(config: ClientConfig, schedules: ScheduleStore,
                      args: argparse.Namespace, output: Output,
                      reactor: IDestinationReactor) -> int:
        try:
            return int(await command(config, schedules, args, output, reactor))
        except BackupRemoteError as error:
            if error.code == VALIDATION_FAILED or error.code.startswith("LICENSE_"):
                await schedules.recordRejection(op)
            raise

    return counted


async def addCommand(config: ClientConfig, schedules: ScheduleStore,
                     args: argparse.Namespace, output: Output,
                     reactor: IDestinationReactor) -> int:
    now = datetime.now(UTC)
    problems = Problems()
    draft = Schedule(id=str(uuid.uuid4()), name=args.name, rule=Cron("0 0 * * *"),
                     zone=localZoneName(), database=args.db, destinations=tuple(args.dest),
                     enabled=not args.disabled,
                     server=config.pickServer(args.schedule_server or getattr(args, "server", None)))
    draft = _common(args, draft, problems, now)
    problems.raiseIfAny("schedule")
    # everything that can be checked here is, before asking the server
    validateSchedule(draft, serverNames(config))
    draft = await _destinationsChecked(config, schedules, draft, reactor)
    configId, engine, options = await _databaseAndEngine(
        config, reactor, draft.server, args.db, _changes(args), None)
    schedule = validateSchedule(evolve(draft, database=configId, options=options),
                                serverNames(config), engine)
    added = await schedules.add(schedule, now)
    output.result(_json(added, now), "added " + describeSchedule(added, None, now))
    return 0


async def updateCommand(config: ClientConfig, schedules: ScheduleStore,
                        args: argparse.Namespace, output: Output,
                        reactor: IDestinationReactor) -> int:
    now = datetime.now(UTC)
    current = await schedules.get(args.name)
    if args.revision is not None and args.revision != current.revision:
        raise BackupRemoteError(CONFLICT, f"schedule {current.name} is at revision "
                                f"{current.revision}, not {args.revision}")
    problems = Problems()
    changed = _common(args, current, problems, now)
    problems.raiseIfAny("schedule")
    destinations = () if args.no_dest else changed.destinations
    destinations += tuple(name for name in args.dest if name not in destinations)
    changed = evolve(changed, name=args.new_name or changed.name, destinations=destinations,
                     options=None if args.config_options else changed.options)
    engine = None
    validateSchedule(changed, serverNames(config))
    changed = await _destinationsChecked(config, schedules, changed, reactor)
    options = _changes(args)
    if args.db is not None or options:
        configId, engine, merged = await _databaseAndEngine(
            config, reactor, changed.server, args.db or changed.database, options,
            changed.options)
        changed = evolve(changed, database=configId, options=merged)
    validateSchedule(changed, serverNames(config), engine)
    stored = await schedules.update(changed, now)
    output.result(_json(stored, now), "updated " + describeSchedule(stored, None, now))
    return 0


async def listCommand(config: ClientConfig, schedules: ScheduleStore,
                      args: argparse.Namespace, output: Output,
                      reactor: IDestinationReactor) -> int:
    now = datetime.now(UTC)
    found = await schedules.list()
    lines = []
    for schedule in found:
        fire = nextFire(schedule, now) if schedule.enabled else None
        lines.append(f"{schedule.name:<20} {'on ' if schedule.enabled else 'off'} "
                     f"{describeRule(schedule.rule)} ({schedule.zone}); next: "
                     + (_bothZones(fire, schedule.zone) if fire else
                        "never (disabled)" if not schedule.enabled else "never (ended)"))
    output.result([_json(schedule, now) for schedule in found],
                  "\n".join(lines) or "no schedules: add one with `backupremote schedule add`")
    return 0


async def showCommand(config: ClientConfig, schedules: ScheduleStore,
                      args: argparse.Namespace, output: Output,
                      reactor: IDestinationReactor) -> int:
    now = datetime.now(UTC)
    schedule = await schedules.get(args.name)
    fires = await schedules.fires(schedule.id, max(0, args.fires))
    data = _json(schedule, now)
    data["recentFires"] = [_fireJSON(record) for record in fires]
    output.result(data, describeSchedule(schedule, fires, now))
    return 0


async def removeCommand(config: ClientConfig, schedules: ScheduleStore,
                        args: argparse.Namespace, output: Output,
                        reactor: IDestinationReactor) -> int:
    removed = await schedules.remove(args.name)
    output.result({"removed": removed.id, "name": removed.name},
                  f"removed schedule {removed.name} ({removed.id}); its runs and history "
                  "are kept")
    return 0


def _enabling(enabled: bool) -> Command:
    async def command(config: ClientConfig, schedules: ScheduleStore,
                      args: argparse.Namespace, output: Output,
                      reactor: IDestinationReactor) -> int:
        now = datetime.now(UTC)
        current = await schedules.get(args.name)
        stored = current
        if current.enabled != enabled:
            stored = await schedules.update(evolve(current, enabled=enabled), now)
        output.result(_json(stored, now), ("enabled " if enabled else "disabled ")
                      + describeSchedule(stored, None, now))
        return 0

    return command


async def runNowCommand(config: ClientConfig, schedules: ScheduleStore,
                        args: argparse.Namespace, output: Output,
                        reactor: IDestinationReactor) -> int:
    """
    A run of the schedule now, with a fresh runId, as a job of the one
    runner: recorded for the daemon to drive if one runs on this data
    folder, else driven by this command to its end.
    """
    assert config.dataDir is not None
    schedule = await schedules.get(args.name)
    store = schedules.clientStore
    request = await jobRequest(runNowRequest(schedule), DestinationRegistry.inFolder(
        reactor, store, config.dataDir).references)
    if DaemonLock(config.dataDir.child("locks")).running():
        return await _handToDaemon(config, store, request, schedule, args, output, reactor)
    servers = ClientServers(reactor, config, ownConnections=True)
    try:
        from backupremote.client.delivery import licensesOf

        runner = jobRunnerIn(reactor, config.dataDir, store, servers,
                             licenses=licensesOf(config, now(reactor)), policy=config.delivery)
        if output.showsProgress:
            output.out.write(f"run {request.runId} of schedule {schedule.name} started (no "
                             "client daemon runs: this command drives it to its end)\n")
        job = await runner.start(request, JobView(output) if args.wait else JobObserver())
    finally:
        await servers.close()
    output.result(runJSON(job, schedule.name), describeJob(job, schedule.name))
    return 0 if job.succeeded else EXIT_REFUSED


async def _handToDaemon(config: ClientConfig, store: Any, request: JobRequest,
                        schedule: Schedule, args: argparse.Namespace, output: Output,
                        reactor: IReactorTime) -> int:
    """Record the job; the daemon's pickup drives it. C{--wait}: follow it in the store."""
    assert config.dataDir is not None
    jobs = JobStore(store, now(reactor))
    job, _ = await jobs.create(request, config.dataDir.child("downloads").path)
    if not args.wait:
        output.result(runJSON(job, schedule.name),
                      f"run {job.runId} of schedule {schedule.name} recorded; the client "
                      "daemon drives it (see `backupremote runs show "
                      f"{job.runId}`)")
        return 0
    if output.showsProgress:
        output.out.write(f"run {job.runId} of schedule {schedule.name} recorded; the client "
                         "daemon drives it\n")
    seen = job.state
    while not job.finished:
        await deferLater(reactor, WAIT_POLL, lambda: None)
        fresh = await jobs.get(job.runId)
        job = fresh if fresh is not None else job
        if job.state != seen and output.showsProgress:
            output.out.write(f"  {job.state}\n")
            output.out.flush()
        seen = job.state
    output.result(runJSON(job, schedule.name), describeJob(job, schedule.name))
    return 0 if job.succeeded else EXIT_REFUSED


# -- showing


def _bothZones(instant: datetime, zone: str) -> str:
    inZone = instant.astimezone(zoneNamed(zone))
    local = instant.astimezone()
    text = f"{inZone:%Y-%m-%d %H:%M %Z} ({zone})"
    if local.utcoffset() != inZone.utcoffset() or local.tzname() != inZone.tzname():
        text += f" = {local:%Y-%m-%d %H:%M %Z} here"
    return text


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _json(schedule: Schedule, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = scheduleConverter.unstructure(schedule)
    fire = nextFire(schedule, now) if schedule.enabled else None
    data["nextFire"] = _iso(fire)
    data["nextFireInZone"] = fire.astimezone(zoneNamed(schedule.zone)).isoformat() \
        if fire else None
    data["nextFireLocal"] = fire.astimezone().isoformat() if fire else None
    return data


def _fireJSON(record: FireRecord) -> dict[str, Any]:
    return {"fireTime": _iso(record.fireTime), "runId": record.runId,
            "outcome": record.outcome, "detail": record.detail,
            "recordedAt": _iso(record.recordedAt)}


def describeSchedule(schedule: Schedule, fires: list[FireRecord] | None,
                     now: datetime) -> str:
    lines = [f"schedule {schedule.name} ({schedule.id}), "
             f"{'enabled' if schedule.enabled else 'disabled'}, revision {schedule.revision}",
             f"  when:         {describeRule(schedule.rule)} in {schedule.zone}"]
    if schedule.start or schedule.end:
        lines.append(f"  between:      {_iso(schedule.start) or '-'} and "
                     f"{_iso(schedule.end) or '-'}")
    upcoming: list[datetime] = []
    after = now
    while schedule.enabled and len(upcoming) < (3 if fires is not None else 1):
        fire = nextFire(schedule, after)
        if fire is None:
            break
        upcoming.append(fire)
        after = fire
    if upcoming:
        lines.append(f"  next fire:    {_bothZones(upcoming[0], schedule.zone)}")
        lines += [f"                {_bothZones(fire, schedule.zone)}" for fire in upcoming[1:]]
    else:
        lines.append("  next fire:    never (" + ("disabled" if not schedule.enabled
                                                  else "past its end") + ")")
    lines.append(f"  database:     {schedule.database} on server {schedule.server}")
    lines.append(f"  destinations: {', '.join(schedule.destinations) or '-'}")
    if schedule.options is None:
        lines.append("  options:      the configuration's, at each run")
    else:
        o = schedule.options
        lines.append(f"  options:      {o.compression}"
                     + (f" level {o.level}" if o.level is not None else "")
                     + f", {o.checksum}, verification {o.verification}"
                     + (f", format {o.format}" if o.format else "")
                     + (f", post-script {o.postScript}" if o.postScript else ""))
    lines.append(f"  misfire:      grace {_span(schedule.misfireGraceSeconds)}, jitter "
                 f"{_span(schedule.jitterSeconds)}, overlap {schedule.overlap}")
    if fires:
        lines.append("  recent slots:")
        for record in fires:
            lines.append(f"    {_iso(record.fireTime)}  {record.outcome:<8} {record.runId}"
                         + (f"  ({record.detail})" if record.detail else ""))
    return "\n".join(lines)


def _span(seconds: int) -> str:
    if seconds == 0:
        return "none"
    delta = timedelta(seconds=seconds)
    hours, rest = divmod(int(delta.total_seconds()), 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s"))
                   if n) or "0s"
