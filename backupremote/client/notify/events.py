"""
What the notifier is told: one small attrs class per thing worth telling.

The client daemon's parts call L{backupremote.client.notify.Notifier.notify}
with these: the job runner (L{RunFailed}, L{RunSucceeded}), the scheduler
(L{ScheduleMissed}, L{ScheduleSkipped}), the delivery queue
(L{DestinationCircuitOpened}, L{DestinationCircuitClosed}), the connection
to each server (L{ServerUnreachable}, L{ServerReachable}) and the licence
watch (L{LicenseExpiring}).

Each class names its C{KIND}: the word a rule lists in C{on = [...]}
(client.toml). Events of a schedule carry its id (and, when the producer
knows it, its name) so rules per schedule can pick them. Every text field
is shown to people as it is: put no secret in one (error messages from the
registry never carry one).

Two kinds are conditions, with an alert and a recovery: a destination's
circuit (opened, closed) and a server's reachability (unreachable,
reachable). The notifier turns a flapping condition into one alert and one
recovery; the recovery it sends tells how long the condition lasted
(C{downSince}) and how often it flapped (C{flaps}), fields the producer
leaves at their defaults.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import ClassVar, Union

from attrs import field, frozen

from backupremote.client.notify.defaults import (
    CIRCUIT,
    FAILURE,
    LICENSE,
    MISSED,
    SKIPPED,
    SUCCESS,
    UNREACHABLE,
)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("an event's time must carry its time zone")
    return value.astimezone(timezone.utc)


def _optionalUtc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _schedule(scheduleId: str | None, scheduleName: str | None) -> str:
    if scheduleName:
        return f"schedule {scheduleName}"
    if scheduleId:
        return f"schedule {scheduleId}"
    return "no schedule"


@frozen
class RunFailed:
    """A run ended failed (on the server, or at a step of this client's)."""

    KIND: ClassVar[str] = FAILURE
    runId: str
    scheduleId: str | None
    server: str
    database: str
    errorCode: str
    message: str
    scheduleName: str | None = None
    #: the job's step that failed (execute, follow, download, verify,
    #: deliver, release), when known
    step: str | None = None

    def summary(self) -> str:
        return f"backup of {self.database} on {self.server} FAILED: {self.errorCode}"

    def details(self) -> str:
        at = f" at step {self.step}" if self.step else ""
        return (f"The backup of {self.database} on server {self.server} failed{at}: "
                f"{self.errorCode}: {self.message} "
                f"(run {self.runId}, {_schedule(self.scheduleId, self.scheduleName)}).")


@frozen
class RunSucceeded:
    """A run reached its goal: downloaded, verified and delivered."""

    KIND: ClassVar[str] = SUCCESS
    runId: str
    scheduleId: str | None
    server: str
    database: str
    #: the destinations it was delivered to
    destinations: tuple[str, ...] = field(default=(), converter=tuple)
    #: the artifact's size in bytes, when known
    size: int | None = None
    scheduleName: str | None = None

    def summary(self) -> str:
        return f"backup of {self.database} on {self.server} succeeded"

    def details(self) -> str:
        size = f", {self.size} bytes" if self.size is not None else ""
        where = (f", delivered to {', '.join(self.destinations)}" if self.destinations
                 else "")
        return (f"The backup of {self.database} on server {self.server} succeeded"
                f"{size}{where} (run {self.runId}, "
                f"{_schedule(self.scheduleId, self.scheduleName)}).")


@frozen
class ScheduleMissed:
    """A slot of a schedule passed without a run (recorded C{missed})."""

    KIND: ClassVar[str] = MISSED
    scheduleId: str
    fireTime: datetime = field(converter=_utc)
    reason: str
    scheduleName: str | None = None

    def summary(self) -> str:
        return f"{_schedule(self.scheduleId, self.scheduleName)} MISSED its slot"

    def details(self) -> str:
        return (f"The slot of {_when(self.fireTime)} of "
                f"{_schedule(self.scheduleId, self.scheduleName)} was missed: {self.reason}.")


@frozen
class ScheduleSkipped:
    """A slot of a schedule was not run (recorded C{skipped}), by its overlap policy."""

    KIND: ClassVar[str] = SKIPPED
    scheduleId: str
    fireTime: datetime = field(converter=_utc)
    reason: str
    scheduleName: str | None = None

    def summary(self) -> str:
        return f"{_schedule(self.scheduleId, self.scheduleName)} skipped a slot"

    def details(self) -> str:
        return (f"The slot of {_when(self.fireTime)} of "
                f"{_schedule(self.scheduleId, self.scheduleName)} was skipped: {self.reason}.")


@frozen
class DestinationCircuitOpened:
    """The delivery queue stopped trying a destination for a while (its breaker opened)."""

    KIND: ClassVar[str] = CIRCUIT
    destination: str
    errorCode: str
    message: str

    def summary(self) -> str:
        return f"destination {self.destination} is FAILING ({self.errorCode})"

    def details(self) -> str:
        return (f"Deliveries to destination {self.destination} keep failing; the client "
                f"pauses them (circuit open): {self.errorCode}: {self.message}.")


@frozen
class DestinationCircuitClosed:
    """Deliveries to a destination work again (its breaker closed)."""

    KIND: ClassVar[str] = CIRCUIT
    destination: str
    #: filled by the notifier: when the alert's condition began
    downSince: datetime | None = field(default=None, converter=_optionalUtc)
    #: filled by the notifier: how often it failed again before it settled
    flaps: int = 0

    def summary(self) -> str:
        return f"destination {self.destination} recovered"

    def details(self) -> str:
        return (f"Deliveries to destination {self.destination} work again"
                f"{_history(self.downSince, self.flaps)}.")


@frozen
class ServerUnreachable:
    """The client cannot reach a server (or authenticate with it) since C{since}."""

    KIND: ClassVar[str] = UNREACHABLE
    server: str
    since: datetime = field(converter=_utc)
    errorCode: str
    message: str

    def summary(self) -> str:
        return f"server {self.server} is UNREACHABLE"

    def details(self) -> str:
        return (f"The client cannot reach server {self.server} since {_when(self.since)}: "
                f"{self.errorCode}: {self.message}.")


@frozen
class ServerReachable:
    """The client reaches a server again."""

    KIND: ClassVar[str] = UNREACHABLE
    server: str
    downSince: datetime | None = field(default=None, converter=_optionalUtc)
    flaps: int = 0

    def summary(self) -> str:
        return f"server {self.server} is reachable again"

    def details(self) -> str:
        return (f"The client reaches server {self.server} again"
                f"{_history(self.downSince, self.flaps)}.")


@frozen
class LicenseExpiring:
    """The licence a server granted expires in C{daysLeft} days (0: it has expired)."""

    KIND: ClassVar[str] = LICENSE
    server: str
    expiresAt: datetime = field(converter=_utc)
    daysLeft: int

    def summary(self) -> str:
        if self.daysLeft <= 0:
            return f"the licence for server {self.server} has EXPIRED"
        return f"the licence for server {self.server} expires in {_days(self.daysLeft)}"

    def details(self) -> str:
        when = ("expired" if self.daysLeft <= 0 else f"expires in {_days(self.daysLeft)}")
        return (f"The licence this client uses with server {self.server} {when}, on "
                f"{_when(self.expiresAt)}. Ask your licence issuer for a new token and put "
                "it in the file [client] license_file names; after it expires the server "
                "refuses every backup.")


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


def _history(downSince: datetime | None, flaps: int) -> str:
    parts = []
    if downSince is not None:
        parts.append(f"failing since {_when(downSince)}")
    if flaps:
        parts.append(f"it recovered and failed again {flaps} time{'s' if flaps > 1 else ''} "
                     "meanwhile")
    return f" ({'; '.join(parts)})" if parts else ""


Event = Union[RunFailed, RunSucceeded, ScheduleMissed, ScheduleSkipped,
              DestinationCircuitOpened, DestinationCircuitClosed,
              ServerUnreachable, ServerReachable, LicenseExpiring]
EVENT_TYPES: tuple[type, ...] = (
    RunFailed, RunSucceeded, ScheduleMissed, ScheduleSkipped,
    DestinationCircuitOpened, DestinationCircuitClosed,
    ServerUnreachable, ServerReachable, LicenseExpiring,
)
#: An alert's type -> the type of its recovery.
RECOVERIES: dict[type, type] = {
    DestinationCircuitOpened: DestinationCircuitClosed,
    ServerUnreachable: ServerReachable,
}


def conditionOf(event: Event) -> tuple[str, str] | None:
    """The condition an alert or a recovery is about (C{("server", NAME)}), else C{None}."""
    if isinstance(event, (DestinationCircuitOpened, DestinationCircuitClosed)):
        return ("destination", event.destination)
    if isinstance(event, (ServerUnreachable, ServerReachable)):
        return ("server", event.server)
    return None


def isRecovery(event: Event) -> bool:
    return isinstance(event, (DestinationCircuitClosed, ServerReachable))


def scheduleOf(event: Event) -> tuple[str | None, str | None]:
    """The (id, name) of the schedule an event is about, or C{(None, None)}."""
    return (getattr(event, "scheduleId", None), getattr(event, "scheduleName", None))
