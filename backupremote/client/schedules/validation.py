"""
Checking a schedule before it is stored: every field, all problems at once.

A bad schedule raises one C{VALIDATION_FAILED} whose C{details.fields}
names each bad field (C{rule.expression}, C{zone}, C{end}...), and nothing
is stored. The database configuration is checked against its server by the
caller (the CLI resolves a name or id to an id, C{NOT_FOUND} otherwise).
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Collection
from zoneinfo import ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from backupremote.client.schedules.model import (
    OVERLAP_POLICIES,
    Cron,
    Daily,
    Interval,
    Monthly,
    Schedule,
    Weekly,
)
from backupremote.client.schedules.nextfire import UTC, zoneNamed
from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import (
    CHECKSUMS,
    COMPRESSION_LEVELS,
    COMPRESSIONS,
    FORMATS,
    VERIFICATIONS,
    BackupOptions,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
#: A run's scheduleId on the server allows these (docs/protocol.md).
SCHEDULE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DESTINATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SCRIPT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_INTERVAL_MINUTES = 1
MAX_INTERVAL_MINUTES = 366 * 24 * 60
MAX_JITTER = 6 * 3600
MIN_GRACE, MAX_GRACE = 60, 7 * 86400
MIN_TIMEOUT, MAX_TIMEOUT = 60, 7 * 86400


class Problems:
    """What is wrong with a schedule, field by field."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}

    def add(self, name: str, problem: str) -> None:
        self.fields.setdefault(name, problem)

    def raiseIfAny(self, what: str) -> None:
        if self.fields:
            listed = "; ".join(f"{name} {problem}"
                               for name, problem in sorted(self.fields.items()))
            raise BackupRemoteError(VALIDATION_FAILED, f"invalid {what}: {listed}",
                                    details={"fields": dict(sorted(self.fields.items()))})


def validateSchedule(schedule: Schedule, servers: Collection[str] | None = None,
                     engine: str | None = None) -> Schedule:
    """
    C{schedule} if it is valid, else C{VALIDATION_FAILED} naming every bad
    field. C{servers}: the server names of client.toml (unchecked if
    C{None}); C{engine}: the database configuration's engine, to check the
    backup format (unchecked if C{None}).
    """
    problems = Problems()
    if not SCHEDULE_ID.fullmatch(schedule.id):
        problems.add("id", "must be 1-128 letters, digits, '.', '_', ':' or '-'")
    if not NAME.fullmatch(schedule.name):
        problems.add("name", "must be 1-64 letters, digits, spaces, '.', '_' or '-', "
                             "starting with a letter or digit")
    try:
        zoneNamed(schedule.zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.add("zone", f"{schedule.zone!r} is not a known IANA time zone "
                             "(like Europe/Berlin or UTC)")
    _checkRule(schedule, problems)
    if not schedule.database:
        problems.add("database", "is required: a database configuration's name or id")
    if servers is not None and schedule.server not in servers:
        known = ", ".join(sorted(servers)) or "none"
        problems.add("server", f"{schedule.server!r} is not a server of client.toml "
                               f"(known: {known})")
    for index, name in enumerate(schedule.destinations):
        if not DESTINATION.fullmatch(name):
            problems.add(f"destinations.{index}", "must be a destination's name "
                         "(1-64 letters, digits, '.', '_' or '-')")
    if len(set(schedule.destinations)) != len(schedule.destinations):
        problems.add("destinations", "names a destination twice")
    for name in ("start", "end"):
        value: datetime | None = getattr(schedule, name)
        if value is not None and value.tzinfo is None:
            problems.add(name, "must carry its time zone")
    if (schedule.start is not None and schedule.end is not None
            and "start" not in problems.fields and "end" not in problems.fields
            and schedule.end <= schedule.start):
        problems.add("end", "must be after start")
    if not 0 <= schedule.jitterSeconds <= MAX_JITTER:
        problems.add("jitterSeconds", f"must be 0..{MAX_JITTER}")
    elif (isinstance(schedule.rule, Interval)
          and schedule.jitterSeconds >= schedule.rule.minutes * 60 > 0):
        problems.add("jitterSeconds", "must be shorter than the interval")
    if not MIN_GRACE <= schedule.misfireGraceSeconds <= MAX_GRACE:
        problems.add("misfireGraceSeconds", f"must be {MIN_GRACE}..{MAX_GRACE}")
    if schedule.overlap not in OVERLAP_POLICIES:
        problems.add("overlap", f"must be one of: {', '.join(OVERLAP_POLICIES)}")
    if schedule.revision < 1:
        problems.add("revision", "must be 1 or more")
    if schedule.options is not None:
        checkOptions(schedule.options, engine, problems)
    problems.raiseIfAny("schedule")
    return schedule


def _checkTime(value: time, name: str, problems: Problems) -> None:
    if value.second or value.microsecond or value.tzinfo is not None:
        problems.add(name, "must be a local time in whole minutes (HH:MM)")


def _checkRule(schedule: Schedule, problems: Problems) -> None:
    rule = schedule.rule
    if isinstance(rule, Daily):
        if not rule.times:
            problems.add("rule.times", "must list at least one time")
        if len(set(rule.times)) != len(rule.times):
            problems.add("rule.times", "lists a time twice")
        for index, at in enumerate(rule.times):
            _checkTime(at, f"rule.times.{index}", problems)
    elif isinstance(rule, Weekly):
        if not rule.weekdays:
            problems.add("rule.weekdays", "must list at least one day")
        elif any(not 0 <= day <= 6 for day in rule.weekdays) or len(
                set(rule.weekdays)) != len(rule.weekdays):
            problems.add("rule.weekdays", "must be distinct days, 0 (Monday) to 6 (Sunday)")
        _checkTime(rule.at, "rule.at", problems)
    elif isinstance(rule, Monthly):
        if not rule.days and not rule.last:
            problems.add("rule.days", "must list at least one day (1-31 or last)")
        elif any(not 1 <= day <= 31 for day in rule.days) or len(
                set(rule.days)) != len(rule.days):
            problems.add("rule.days", "must be distinct days of the month, 1 to 31")
        _checkTime(rule.at, "rule.at", problems)
    elif isinstance(rule, Interval):
        if not MIN_INTERVAL_MINUTES <= rule.minutes <= MAX_INTERVAL_MINUTES:
            problems.add("rule.minutes", f"must be at least {MIN_INTERVAL_MINUTES} minute "
                                         f"(and at most {MAX_INTERVAL_MINUTES})")
        if rule.anchor.tzinfo is None:
            problems.add("rule.anchor", "must carry its time zone")
    elif isinstance(rule, Cron):
        problem = cronProblem(rule.expression)
        if problem:
            problems.add("rule.expression", problem)
    else:
        problems.add("rule", "must be daily, weekly, monthly, interval or cron")


def cronProblem(expression: str) -> str | None:
    """What is wrong with a 5-field cron expression, or C{None}."""
    if len(expression.split()) != 5:
        return (f"{expression!r} is not a 5-field cron expression "
                "(minute hour day-of-month month day-of-week)")
    try:
        fires = CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
        next(fires)
    except CronSimError as error:
        return f"{expression!r} is not a valid cron expression: {error}"
    except StopIteration:
        return f"{expression!r} never fires"
    return None


def checkOptions(options: BackupOptions, engine: str | None, problems: Problems,
                 prefix: str = "options.") -> None:
    """
    The problems of a schedule's backup options that can be seen without
    the server (the server checks them all again at each run).
    """
    if options.format is not None and engine is not None:
        allowed = FORMATS.get(engine, ())
        if options.format not in allowed:
            problems.add(prefix + "format", f"must be one of: {', '.join(allowed) or 'none'}")
    if options.compression not in COMPRESSIONS:
        problems.add(prefix + "compression", f"must be one of: {', '.join(COMPRESSIONS)}")
    elif options.level is not None:
        levels = COMPRESSION_LEVELS.get(options.compression)
        if levels is None:
            problems.add(prefix + "level", "must be empty without compression")
        elif not levels[0] <= options.level <= levels[1]:
            problems.add(prefix + "level",
                         f"must be {levels[0]}..{levels[1]} for {options.compression}")
    if not 0 <= options.threads <= 256:
        problems.add(prefix + "threads", "must be 0 (all cores) to 256")
    if options.checksum not in CHECKSUMS:
        problems.add(prefix + "checksum", f"must be one of: {', '.join(CHECKSUMS)}")
    if options.verification not in VERIFICATIONS:
        problems.add(prefix + "verification", f"must be one of: {', '.join(VERIFICATIONS)}")
    if options.postScript is not None and not SCRIPT_NAME.fullmatch(options.postScript):
        problems.add(prefix + "postScript", "must be the name of a script in the server's "
                     "allowlist (letters, digits, '.', '_', '-'), not a path")
    if not MIN_TIMEOUT <= options.timeoutSeconds <= MAX_TIMEOUT:
        problems.add(prefix + "timeoutSeconds", f"must be {MIN_TIMEOUT}..{MAX_TIMEOUT}")
