"""
Warnings before a licence expires: 30, 7 and 1 days before (by default),
and once it has expired.

The decision is a pure function of the expiry, the time and the
thresholds (L{warningTier}, L{nextTierAt}); L{LicenseExpiryWatch} drives it
on an injected clock: told each server's expiry (at every login, from the
session's C{licenseExpiresAt}), it logs a warning and emits one
L{LicenseExpiring} when a server's licence enters a tier, and arms a
C{callLater} to the next tier's instant (at most an hour away, so a wall
clock that jumps is caught up). A renewed licence (a later expiry) starts
over. Each tier is told once per daemon run: a restart inside a tier tells
it again, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from attrs import define
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from backupremote.client.expiry import daysLeft
from backupremote.client.notify.defaults import LICENSE_DAYS
from backupremote.client.notify.events import LicenseExpiring
from backupremote.client.notify.notifier import EventSink

#: The longest wait between two checks, in seconds.
RECHECK = 3600.0
DAY = timedelta(days=1)

_log = Logger(namespace="backupremote.client.notify")


def warningTier(expiresAt: datetime, now: datetime,
                thresholds: Sequence[int] = LICENSE_DAYS) -> int | None:
    """
    The smallest threshold (days) the time left is within; 0 once expired;
    C{None} while more time is left than the largest threshold.
    """
    left = expiresAt - now
    if left <= timedelta(0):
        return 0
    within = [t for t in thresholds if left <= t * DAY]
    return min(within) if within else None


def nextTierAt(expiresAt: datetime, now: datetime,
               thresholds: Sequence[int] = LICENSE_DAYS) -> datetime | None:
    """The first instant after C{now} at which L{warningTier} changes, if any."""
    instants = [expiresAt - t * DAY for t in thresholds] + [expiresAt]
    later = [i for i in instants if i > now]
    return min(later) if later else None


@define
class _Watched:
    expiresAt: datetime
    told: int | None = None
    timer: IDelayedCall | None = None


class LicenseExpiryWatch(Service):
    """Tells C{sink} (the notifier) and the log when a server's licence nears its end."""

    def __init__(self, clock: IReactorTime, sink: EventSink,
                 thresholds: Sequence[int] = LICENSE_DAYS) -> None:
        if not thresholds or any(t < 1 for t in thresholds):
            raise ValueError("warning thresholds are whole days >= 1")
        self.clock = clock
        self.sink = sink
        self.thresholds = tuple(sorted(set(thresholds), reverse=True))
        self._servers: dict[str, _Watched] = {}

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def observe(self, server: str, expiresAt: datetime | None) -> None:
        """
        C{server} granted a licence until C{expiresAt} (C{None}: one that
        never expires). Call it at every login; the same expiry again
        changes nothing.
        """
        watched = self._servers.get(server)
        if watched is not None and watched.expiresAt == expiresAt:
            return
        if watched is not None and watched.timer is not None and watched.timer.active():
            watched.timer.cancel()
        if expiresAt is None:
            self._servers.pop(server, None)
            return
        self._servers[server] = _Watched(expiresAt.astimezone(timezone.utc))
        self._check(server)

    def _check(self, server: str) -> None:
        watched = self._servers[server]
        watched.timer = None
        now = self.now()
        tier = warningTier(watched.expiresAt, now, self.thresholds)
        if tier is not None and (watched.told is None or tier < watched.told):
            watched.told = tier
            event = LicenseExpiring(server, watched.expiresAt, daysLeft(watched.expiresAt, now))
            _log.warn("{text}", text=event.details(), server=server,
                      licenseExpiresAt=watched.expiresAt.isoformat(),
                      daysLeft=event.daysLeft)
            self.sink(event)
        following = nextTierAt(watched.expiresAt, now, self.thresholds)
        if following is not None:
            delay = min(RECHECK, max(0.0, (following - now).total_seconds()))
            watched.timer = self.clock.callLater(delay, self._check, server)

    def stopService(self) -> None:
        super().stopService()
        for watched in self._servers.values():
            if watched.timer is not None and watched.timer.active():
                watched.timer.cancel()
            watched.timer = None
