"""
The notifier: what the daemon's parts call with an event, and what turns
events into few, useful messages on each channel.

    notifier = Notifier(clock, [Route(EmailChannel(...), Rules(on={"failure"}))])
    notifier.notify(RunFailed(runId, scheduleId, "default", "shop", "DUMP_FAILED", "..."))

C{notify} never fails and never waits: the caller's work does not depend on
a mail server. Between an event and a channel stand three things, all on
the injected clock:

  1. Conditions. A destination's circuit opening is alerted at once; a
     server unreachable only once it has stayed so for C{unreachableAfter}
     seconds (a restart or a short network cut tells nobody). The recovery
     is sent once the condition has stayed cleared for C{recoveryAfter}
     seconds; if it comes back meanwhile, that is one more flap of the
     same alert, not a new one. A flapping destination or server thus
     gives one alert and one recovery, and the recovery says since when
     and how often it flapped.
  2. Rules: each channel is told the kinds its L{Rules} list (C{on}, or the
     schedule's own list).
  3. The digest: a channel gets the first event at once, and whatever
     follows within C{digestAfter} seconds of a message as one digest
     message at the end of that time (at most L{DIGEST_LIMIT} events in
     full; past that, a count). A storm of failures is a few messages,
     not hundreds.

A channel that fails after its own retries is logged (its error says what
the receiver answered) and the notification is dropped: nothing queues up
behind a dead mail server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from attrs import define, evolve, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from backupremote.client.notify.defaults import DIGEST_AFTER, RECOVERY_AFTER, UNREACHABLE_AFTER
from backupremote.client.notify.events import (
    DestinationCircuitOpened,
    Event,
    ServerUnreachable,
    conditionOf,
    isRecovery,
    scheduleOf,
)
from backupremote.client.notify.interface import INotificationChannel
from backupremote.client.notify.messages import Notification
from backupremote.client.notify.rules import Rules

#: Events a digest lists in full; the rest are counted.
DIGEST_LIMIT = 100

_log = Logger(namespace="backupremote.client.notify")


@frozen
class Route:
    """A channel and the rules of what it is told."""

    channel: INotificationChannel
    rules: Rules = field(factory=Rules)


@define
class _Condition:
    """An alert's condition: pending (not yet alerted), alerted, or recovering."""

    alert: Event
    since: datetime
    alerted: bool = False
    flaps: int = 0
    #: the recovery waiting for its quiet time, if any
    recovery: Event | None = None
    timer: IDelayedCall | None = None

    def cancelTimer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class _Outbox:
    """One channel's digest: send now, or gather until the quiet time ends."""

    def __init__(self, notifier: Notifier, route: Route) -> None:
        self.notifier = notifier
        self.route = route
        self.quietUntil = float("-inf")
        self.held: list[Event] = []
        self.omitted = 0
        self.timer: IDelayedCall | None = None

    def add(self, event: Event) -> None:
        now = self.notifier.clock.seconds()
        if not self.held and now >= self.quietUntil:
            self._send([event], 0)
            return
        if len(self.held) < DIGEST_LIMIT:
            self.held.append(event)
        else:
            self.omitted += 1
        if self.timer is None:
            self.timer = self.notifier.clock.callLater(max(0.0, self.quietUntil - now),
                                                       self.flush)

    def flush(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.held:
            events, omitted = self.held, self.omitted
            self.held, self.omitted = [], 0
            self._send(events, omitted)

    def _send(self, events: list[Event], omitted: int) -> None:
        self.quietUntil = self.notifier.clock.seconds() + self.notifier.digestAfter
        notification = Notification(tuple(events), self.notifier.now(), omitted)
        self.notifier._sending(self.route.channel, notification)


class Notifier(Service):
    """
    Takes events (L{notify}) and tells the channels of C{routes}.

    A service: while stopped, events are still taken and sent (a CLI may
    use one without starting it); L{stopService} sends what digests hold
    and waits for the messages in flight.
    """

    def __init__(self, clock: IReactorTime, routes: Sequence[Route] = (), *,
                 unreachableAfter: float = UNREACHABLE_AFTER,
                 recoveryAfter: float = RECOVERY_AFTER,
                 digestAfter: float = DIGEST_AFTER,
                 scheduleNames: ScheduleNames | None = None) -> None:
        self.clock = clock
        self.scheduleNames = scheduleNames
        self.routes = tuple(routes)
        self.unreachableAfter = unreachableAfter
        self.recoveryAfter = recoveryAfter
        self.digestAfter = digestAfter
        self._outboxes = [_Outbox(self, route) for route in self.routes]
        self._conditions: dict[tuple[str, str], _Condition] = {}
        self._inFlight: set[Deferred[Any]] = set()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)

    def notify(self, event: Event) -> None:
        """
        Take C{event}; never raises (a bad event is logged and dropped). An
        event of a schedule given by id only (the job runner knows no name)
        is named through C{scheduleNames} first, so rules by name apply.
        """
        scheduleId, scheduleName = scheduleOf(event)
        if self.scheduleNames is not None and scheduleId is not None and scheduleName is None:
            naming = maybeDeferred(self.scheduleNames, scheduleId)
            naming.addCallbacks(
                lambda name: self._take(evolve(event, scheduleName=name) if name else event),
                lambda _: self._take(event))
            return
        self._take(event)

    def _take(self, event: Event) -> None:
        try:
            condition = conditionOf(event)
            if condition is None:
                self._dispatch(event)
            elif isRecovery(event):
                self._cleared(condition, event)
            else:
                self._raised(condition, event)
        except Exception:
            _log.failure("cannot notify {event!r}", event=event)

    # conditions

    def _raised(self, key: tuple[str, str], event: Event) -> None:
        condition = self._conditions.get(key)
        if condition is not None:
            if condition.recovery is not None:
                # it came back before its recovery was told: one more flap
                condition.cancelTimer()
                condition.recovery = None
                condition.flaps += 1
            return
        since = event.since if isinstance(event, ServerUnreachable) else self.now()
        condition = _Condition(event, since)
        self._conditions[key] = condition
        delay = 0.0
        if isinstance(event, ServerUnreachable):
            delay = self.unreachableAfter - (self.now() - since).total_seconds()
        if delay <= 0 or isinstance(event, DestinationCircuitOpened):
            self._alert(key)
        else:
            condition.timer = self.clock.callLater(delay, self._alert, key)

    def _alert(self, key: tuple[str, str]) -> None:
        condition = self._conditions[key]
        condition.timer = None
        condition.alerted = True
        self._dispatch(condition.alert)

    def _cleared(self, key: tuple[str, str], event: Event) -> None:
        condition = self._conditions.get(key)
        if condition is None or condition.recovery is not None:
            return
        if not condition.alerted:
            # cleared before anyone was told: nobody needs to hear of it
            condition.cancelTimer()
            del self._conditions[key]
            return
        condition.recovery = event
        condition.timer = self.clock.callLater(self.recoveryAfter, self._recovered, key)

    def _recovered(self, key: tuple[str, str]) -> None:
        condition = self._conditions.pop(key)
        assert condition.recovery is not None
        self._dispatch(evolve(condition.recovery, downSince=condition.since,  # type: ignore
                              flaps=condition.flaps))

    # channels

    def _dispatch(self, event: Event) -> None:
        for outbox in self._outboxes:
            if outbox.route.rules.matches(event):
                outbox.add(event)

    def _sending(self, channel: INotificationChannel, notification: Notification) -> None:
        sending = maybeDeferred(channel.send, notification)
        self._inFlight.add(sending)

        def done(result: Any) -> None:
            self._inFlight.discard(sending)

        def failed(failure: Any) -> None:
            _log.error("the {channel} notification {id} ({subject}) was not sent: {error}",
                       channel=channel.name, id=notification.id,
                       subject=notification.subject, error=str(failure.value))

        sending.addErrback(failed).addBoth(done)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for condition in self._conditions.values():
            condition.cancelTimer()
        self._conditions.clear()
        for outbox in self._outboxes:
            outbox.flush()
        waiting = DeferredList(list(self._inFlight), consumeErrors=True)
        return waiting.addCallback(lambda _: None)


#: What a producer of events is given: C{notifier.notify}.
EventSink = Callable[[Event], None]
#: A schedule's id -> its name (or a Deferred of it; C{None} or a failure: unknown).
ScheduleNames = Callable[[str], "Deferred[str | None] | str | None"]
