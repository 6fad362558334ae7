"""
The one Interface of a notification channel: email, webhook, and the
in-memory twin in L{backupremote.testing}, all checked by one contract
suite (C{tests/client/notify/contract.py}).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from backupremote.client.notify.messages import Notification


class INotificationChannel(Interface):
    """A way to tell people: one message per call of L{send}."""

    name = Attribute("How the log and messages name the channel: 'email', 'webhook'.")

    def send(notification: Notification) -> Deferred[None]:
        """
        Send C{notification} once; fires once the receiver took it (the
        mail server answered 250, the webhook 2xx). Refusals that may pass
        (the receiver down, busy, a timeout) are retried by the channel on
        its clock before it gives up.

        @raise BackupRemoteError: C{NOTIFICATION_FAILED} (or C{TIMEOUT})
            saying what the receiver answered; the message never holds a
            secret.
        """
