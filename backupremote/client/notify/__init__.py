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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backupremote.client.notify.defaults import DEFAULT_KINDS, KINDS, LICENSE_DAYS
    from backupremote.client.notify.events import (
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
    from backupremote.client.notify.license import LicenseExpiryWatch
    from backupremote.client.notify.messages import Notification
    from backupremote.client.notify.notifier import EventSink, Notifier, Route
    from backupremote.client.notify.rules import Rules
    from backupremote.client.notify.smtp import EmailChannel
    from backupremote.client.notify.webhook import WebhookChannel

#: name -> its module, imported on first use: client.toml's [notify] is
#: parsed by every CLI command, which sends no email and calls no webhook
#: (no twisted.mail, no treq)
_EXPORTS = {
    "DEFAULT_KINDS": "backupremote.client.notify.defaults",
    "KINDS": "backupremote.client.notify.defaults",
    "DestinationCircuitClosed": "backupremote.client.notify.events",
    "DestinationCircuitOpened": "backupremote.client.notify.events",
    "Event": "backupremote.client.notify.events",
    "LicenseExpiring": "backupremote.client.notify.events",
    "RunFailed": "backupremote.client.notify.events",
    "RunSucceeded": "backupremote.client.notify.events",
    "ScheduleMissed": "backupremote.client.notify.events",
    "ScheduleSkipped": "backupremote.client.notify.events",
    "ServerReachable": "backupremote.client.notify.events",
    "ServerUnreachable": "backupremote.client.notify.events",
    "INotificationChannel": "backupremote.client.notify.interface",
    "LICENSE_DAYS": "backupremote.client.notify.defaults",
    "LicenseExpiryWatch": "backupremote.client.notify.license",
    "Notification": "backupremote.client.notify.messages",
    "EventSink": "backupremote.client.notify.notifier",
    "Notifier": "backupremote.client.notify.notifier",
    "Route": "backupremote.client.notify.notifier",
    "Rules": "backupremote.client.notify.rules",
    "EmailChannel": "backupremote.client.notify.smtp",
    "WebhookChannel": "backupremote.client.notify.webhook",
}

__all__ = [
    "DEFAULT_KINDS", "KINDS", "LICENSE_DAYS",
    "DestinationCircuitClosed", "DestinationCircuitOpened", "EmailChannel", "Event",
    "EventSink", "INotificationChannel", "LicenseExpiring", "LicenseExpiryWatch",
    "Notification", "Notifier", "Route", "Rules", "RunFailed", "RunSucceeded",
    "ScheduleMissed", "ScheduleSkipped", "ServerReachable", "ServerUnreachable",
    "WebhookChannel",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
