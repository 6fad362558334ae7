"""
What a schedule is: when it fires (a rule in an IANA time zone) and what it
commands (a backup of a database configuration on a server, delivered to
destinations).

The models are frozen attrs classes; L{scheduleConverter} turns them into
JSON-ready dicts and back (the rule tagged by C{kind}, times as C{"HH:MM"}).
Nothing here checks values: L{backupremote.client.schedules.validation}
does, before anything is stored.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, ClassVar, Union

from attrs import field, frozen
from cattrs.strategies import configure_tagged_union

from backupremote.protocol.options import BackupOptions
from backupremote.protocol.structured import makeConverter

#: Day names as the CLI and JSON spell them; index 0 is Monday (like
#: C{date.weekday()}).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: What a fire does while the schedule's previous run is still active.
OVERLAP_POLICIES = ("skip", "queue")
#: Default misfire grace: a fire found late by at most this many seconds
#: still runs (once, for all the fires missed within it).
DEFAULT_GRACE = 3600


@frozen
class Daily:
    """Every day at each of C{times} (local wall times, whole minutes)."""

    KIND: ClassVar[str] = "daily"
    times: tuple[time, ...]


@frozen
class Weekly:
    """On each of C{weekdays} (0 = Monday) at C{at}."""

    KIND: ClassVar[str] = "weekly"
    weekdays: tuple[int, ...]
    at: time


@frozen
class Monthly:
    """
    On each of C{days} of the month at C{at}, and on its last day when
    C{last}. A day a month does not have (31 in April, 30 in February)
    fires on that month's last day instead, once: a monthly backup is never
    skipped for a short month.
    """

    KIND: ClassVar[str] = "monthly"
    days: tuple[int, ...]
    at: time
    last: bool = False


@frozen
class Interval:
    """
    Every C{minutes} of elapsed time, at C{anchor} + k x C{minutes}: the
    spacing holds across DST changes (their wall times shift with them).
    """

    KIND: ClassVar[str] = "interval"
    minutes: int
    anchor: datetime


@frozen
class Cron:
    """A 5-field cron expression, evaluated by C{cronsim} like Debian's cron."""

    KIND: ClassVar[str] = "cron"
    expression: str


Rule = Union[Daily, Weekly, Monthly, Interval, Cron]
RULES: tuple[type, ...] = (Daily, Weekly, Monthly, Interval, Cron)


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


@frozen
class Schedule:
    """
    One schedule of the client.

    @ivar id: a uuid4 string, fixed at creation; it names the schedule in
        run ids (L{backupremote.client.schedules.runids}) and on the server.
    @ivar database: the database configuration's id on C{server}.
    @ivar options: the backup options sent with each run; C{None} means the
        configuration's defaults at the time of the run.
    @ivar destinations: names of the client's destinations, in order.
    @ivar start: no fire before this instant; C{end}: none after it.
    @ivar jitterSeconds: each fire is delayed by a pseudo-random 0..this
        many seconds, fixed per slot (its run id is the slot's all the same).
    @ivar misfireGraceSeconds: see L{DEFAULT_GRACE}.
    @ivar overlap: L{OVERLAP_POLICIES}: C{skip} records a fire that finds
        the previous run still active as SKIPPED; C{queue} keeps one such
        fire and starts it when the active run ends.
    @ivar revision: 1 at creation, +1 at each change (optimistic
        concurrency, and how the scheduler knows to recompute).
    """

    id: str
    name: str
    rule: Rule
    zone: str
    database: str
    server: str = "default"
    destinations: tuple[str, ...] = field(default=(), converter=_tuple)
    options: BackupOptions | None = None
    enabled: bool = True
    start: datetime | None = None
    end: datetime | None = None
    jitterSeconds: int = 0
    misfireGraceSeconds: int = DEFAULT_GRACE
    overlap: str = "skip"
    revision: int = 1


def formatTime(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def parseTime(text: str) -> time:
    """C{"HH:MM"} (24-hour clock) as a L{time}; C{ValueError} otherwise."""
    hours, sep, minutes = text.strip().partition(":")
    if (not sep or not (1 <= len(hours) <= 2) or len(minutes) != 2
            or not (hours + minutes).isascii() or not (hours + minutes).isdigit()):
        raise ValueError(f"{text!r} is not a time HH:MM")
    return time(int(hours), int(minutes))


def _makeConverter() -> Any:
    converter = makeConverter(forbidExtraKeys=True)

    def structureTime(value: Any, _type: type) -> time:
        if not isinstance(value, str):
            raise TypeError("a time must be a string HH:MM")
        return parseTime(value)

    converter.register_structure_hook(time, structureTime)
    converter.register_unstructure_hook(time, formatTime)
    configure_tagged_union(Rule, converter, tag_generator=lambda cls: cls.KIND,
                           tag_name="kind")
    return converter


#: Schedules to and from JSON-ready dicts (the store and C{--json} output).
scheduleConverter = _makeConverter()


def describeRule(rule: Rule) -> str:
    """The rule as a person reads it (and close to the CLI flag that makes it)."""
    if isinstance(rule, Daily):
        return "daily at " + ", ".join(formatTime(t) for t in rule.times)
    if isinstance(rule, Weekly):
        days = ",".join(WEEKDAYS[d] for d in rule.weekdays)
        return f"weekly on {days} at {formatTime(rule.at)}"
    if isinstance(rule, Monthly):
        days = [str(d) for d in rule.days] + (["last"] if rule.last else [])
        return f"monthly on day {','.join(days)} at {formatTime(rule.at)}"
    if isinstance(rule, Interval):
        every = (f"{rule.minutes // 60}h" if rule.minutes % 60 == 0
                 else f"{rule.minutes}m")
        return f"every {every} from {rule.anchor.isoformat()}"
    return f"cron {rule.expression}"
