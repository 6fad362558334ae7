"""
When a schedule fires next: a pure function of the schedule and an instant.

Wall-clock rules (daily, weekly, monthly) name local times in the
schedule's IANA zone:

  - a local time that does not exist that day (the hour skipped when clocks
    spring forward) fires at the first valid instant after it, the moment
    the clocks changed (02:30 in Europe/Berlin on the last Sunday of March
    fires at 03:00 CEST);
  - a local time that exists twice (the hour repeated when clocks fall
    back) fires once, at its first occurrence.

Cron expressions are evaluated by C{cronsim}, which behaves like Debian's
cron: an expression with a fixed minute and hour follows the two rules
above; one with a wildcard or step in the minute or hour (C{*/15 * * * *})
follows elapsed time, so it also fires in the repeated hour. Intervals are
elapsed time from their anchor.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Callable
from zoneinfo import ZoneInfo

from cronsim import CronSim

from backupremote.client.schedules.model import (
    Cron,
    Daily,
    Interval,
    Monthly,
    Rule,
    Schedule,
    Weekly,
)

UTC = timezone.utc
_ONE_MINUTE = timedelta(minutes=1)
_TINY = timedelta(microseconds=1)
#: The longest a wall-clock rule can go without a fire (a monthly rule
#: always fires within a month), with room to spare.
_SCAN_DAYS = 400


@lru_cache(maxsize=256)
def zoneNamed(name: str) -> ZoneInfo:
    """The IANA zone C{name} (C{ZoneInfoNotFoundError} or C{ValueError} if none)."""
    return ZoneInfo(name)


def resolveLocal(wall: datetime, zone: ZoneInfo) -> datetime:
    """
    The instant (UTC) at which the naive local time C{wall} happens in
    C{zone}: its first occurrence if it happens twice, the first valid
    minute after it if it does not happen at all.
    """
    candidate = wall
    while True:
        aware = candidate.replace(tzinfo=zone, fold=0)
        instant = aware.astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == candidate:
            return instant
        candidate += _ONE_MINUTE


def nextFire(schedule: Schedule, after: datetime) -> datetime | None:
    """
    The first fire of C{schedule} strictly after C{after} (an aware
    datetime), as an aware UTC datetime, or C{None} if it never fires again
    (past its end). The enabled flag is not looked at: a disabled schedule
    has fire times, it only does not act on them.
    """
    if after.tzinfo is None:
        raise ValueError("after must be an aware datetime")
    if schedule.start is not None and after < schedule.start:
        # fires at the start itself count: look from just before it
        after = schedule.start - _TINY
    fire = nextRuleFire(schedule.rule, zoneNamed(schedule.zone), after)
    if fire is None or (schedule.end is not None and fire > schedule.end):
        return None
    return fire


def nextRuleFire(rule: Rule, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire of C{rule} in C{zone} strictly after C{after}, in UTC."""
    after = after.astimezone(UTC)
    if isinstance(rule, Interval):
        step = timedelta(minutes=rule.minutes)
        anchor = rule.anchor.astimezone(UTC)
        return anchor + ((after - anchor) // step + 1) * step
    if isinstance(rule, Cron):
        return _nextCron(rule.expression, zone, after)
    if isinstance(rule, Daily):
        return _nextWallClock(lambda day: True, rule.times, zone, after)
    if isinstance(rule, Weekly):
        weekdays = frozenset(rule.weekdays)
        return _nextWallClock(lambda day: day.weekday() in weekdays, (rule.at,), zone, after)
    if isinstance(rule, Monthly):
        return _nextWallClock(_monthDays(rule), (rule.at,), zone, after)
    raise TypeError(f"not a schedule rule: {rule!r}")


def _monthDays(rule: Monthly) -> Callable[[date], bool]:
    days = frozenset(rule.days)
    latest = max(days, default=0)

    def matches(day: date) -> bool:
        if day.day in days:
            return True
        length = calendar.monthrange(day.year, day.month)[1]
        return day.day == length and (rule.last or latest > length)

    return matches


def _nextWallClock(matches: Callable[[date], bool], times: tuple[time, ...],
                   zone: ZoneInfo, after: datetime) -> datetime | None:
    """
    The first of C{times} on a day that C{matches}, strictly after
    C{after}. Resolved instants never decrease along (day, time), so the
    first one past C{after} is the answer; two times that resolve to one
    instant (both in a skipped hour) fire once.
    """
    ordered = sorted(times)
    day = after.astimezone(zone).date() - timedelta(days=1)
    for _ in range(_SCAN_DAYS):
        if matches(day):
            for at in ordered:
                instant = resolveLocal(datetime.combine(day, at), zone)
                if instant > after:
                    return instant
        day += timedelta(days=1)
    return None


def _nextCron(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    # cronsim works on local wall times for fixed-time expressions, so from
    # the second pass of a repeated hour it can name the first pass again:
    # such an instant is already past and is skipped (it fired once).
    fires = CronSim(expression, after.astimezone(zone))
    for _ in range(3):
        try:
            fire = next(fires).astimezone(UTC)
        except StopIteration:
            return None
        if fire > after:
            return fire
    return None
