"""
Notifications: telling people by email and signed webhook when a backup
fails, a schedule misses, a destination or a server is down, or a licence
nears its end.

The daemon's parts report events; they need only the notifier's
C{notify} (an L{EventSink}) and the event classes:

    from backupremote.client.notify import RunFailed, ScheduleMissed

    notify(RunFailed(job.runId, job.scheduleId, job.server, database,
                     job.errorCode, job.errorMessage, step=job.failedStep))
    notify(ScheduleMissed(schedule.id, fireTime, reason, scheduleName=schedule.name))
    notify(DestinationCircuitOpened(name, error.code, error.message))  # and ...Closed(name)
    notify(ServerUnreachable(server, since, error.code, error.message))  # and ServerReachable(server)
    licenseWatch.observe(server, session["licenseExpiresAt"])  # at every login

The daemon builds them from client.toml:

    notifier = config.notify.notifier(reactor)          # a Notifier (a service)
    licenseWatch = LicenseExpiryWatch(reactor, notifier.notify, config.notify.licenseDays)

Channels implement L{INotificationChannel}: L{EmailChannel} (Twisted's
ESMTP client), L{WebhookChannel} (treq, HMAC-SHA256 signed), and the twin
L{backupremote.testing.MemoryNotificationChannel}.
"""

from backupremote.client.notify.events import (
    DEFAULT_KINDS,
    KINDS,
    DestinationCircuitClosed,
    DestinationCircuitOpened,
    Event,
    LicenseExpiring,
    RunFailed,
    RunSucceeded,
    ScheduleMissed,
    ScheduleSkipped,
    ServerReachable,
    ServerUnreachable,
)
from backupremote.client.notify.interface import INotificationChannel
from backupremote.client.notify.license import LICENSE_DAYS, LicenseExpiryWatch
from backupremote.client.notify.messages import Notification
from backupremote.client.notify.notifier import EventSink, Notifier, Route
from backupremote.client.notify.rules import Rules
from backupremote.client.notify.smtp import EmailChannel
from backupremote.client.notify.webhook import WebhookChannel

__all__ = [
    "DEFAULT_KINDS", "KINDS", "LICENSE_DAYS",
    "DestinationCircuitClosed", "DestinationCircuitOpened", "EmailChannel", "Event",
    "EventSink", "INotificationChannel", "LicenseExpiring", "LicenseExpiryWatch",
    "Notification", "Notifier", "Route", "Rules", "RunFailed", "RunSucceeded",
    "ScheduleMissed", "ScheduleSkipped", "ServerReachable", "ServerUnreachable",
    "WebhookChannel",
]
