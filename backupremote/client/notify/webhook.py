"""
The webhook channel: one JSON POST per notification with C{treq}, signed
with HMAC-SHA256, a timeout on each attempt and retries with growing waits
on the injected clock.

What the receiver gets (docs/configuration.md, C{[notify.webhook]}):

    POST URL
    Content-Type: application/json
    X-BackupRemote-Id: <the notification's id, the same on every retry>
    X-BackupRemote-Timestamp: <Unix seconds of this attempt>
    X-BackupRemote-Signature: sha256=<hex HMAC-SHA256(secret, TIMESTAMP + "." + BODY)>

    {"version": 1, "id": ..., "createdAt": ..., "subject": ..., "text": ...,
     "omitted": 0, "events": [{"type": "RunFailed", "kind": "failure", ...}]}

A receiver recomputes the signature over the timestamp and the raw body
with the shared secret, compares it in constant time, and refuses a
timestamp far from its clock (a replayed request). The secret itself never
travels.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Sequence
from urllib.parse import urlsplit

import treq.client
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from zope.interface import implementer

from backupremote import __version__
from backupremote.client.destinations.httpsession import treqReactor
from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.notify.interface import INotificationChannel
from backupremote.client.notify.messages import Notification
from backupremote.client.notify.retry import RETRY_DELAYS, WEBHOOK_TIMEOUT, Retryable, withRetries
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    NOTIFICATION_FAILED,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.reactors import IConnectingReactor

SIGNATURE_HEADER = "X-BackupRemote-Signature"
TIMESTAMP_HEADER = "X-BackupRemote-Timestamp"
ID_HEADER = "X-BackupRemote-Id"
#: Answers worth another attempt besides 5xx: timeout, too many requests.
_RETRYABLE_STATUS = {408, 425, 429}
#: The most bytes of an answer read (quoted in errors).
_ANSWER_CAP = 4096


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The C{X-BackupRemote-Signature} value for C{body} sent at C{timestamp}."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def checkWebhookURL(url: str) -> str:
    """
    C{url} if it is C{https://...}, or C{http://...} to a loopback address;
    else C{CONFIG_INVALID}. (The body is signed, not encrypted: it names
    servers, databases and errors, which stay off networks in clear.)
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackupRemoteError(CONFIG_INVALID,
                                f"notify.webhook.url must be an https:// URL, not {url!r}")
    if parts.username or parts.password:
        raise BackupRemoteError(
            CONFIG_INVALID, "notify.webhook.url must not carry a user or password: the "
            "receiver checks the signature made with secret_file")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise BackupRemoteError(
            CONFIG_INVALID, f"notify.webhook.url must use https:// (http:// is allowed "
            f"to this machine only, not {parts.hostname})")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@implementer(INotificationChannel)
class WebhookChannel:
    """POST each notification to C{url}, signed with C{secret}."""

    name = "webhook"

    def __init__(self, reactor: IConnectingReactor, url: str, secret: bytes, *,
                 verification: PeerVerification | None = None,
                 timeout: float = WEBHOOK_TIMEOUT, clock: IReactorTime | None = None,
                 retryDelays: Sequence[float] = RETRY_DELAYS) -> None:
        if not secret:
            raise ValueError("a webhook needs a secret to sign with")
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.url = checkWebhookURL(url)
        self.__secret = secret
        self.verification = verification or PeerVerification()
        self.timeout = timeout
        self.retryDelays = tuple(retryDelays)
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, contextFactory=self.verification,
                      connectTimeout=timeout, pool=self._pool)
        self._http = treq.client.HTTPClient(agent)

    def __repr__(self) -> str:
        return f"<WebhookChannel {self.location}>"

    @property
    def location(self) -> str:
        """The receiver, for messages: scheme, host and port (no path, which may hold a token)."""
        parts = urlsplit(self.url)
        return f"the webhook {parts.scheme}://{parts.netloc}"

    def body(self, notification: Notification) -> bytes:
        return json.dumps(notification.payload(), ensure_ascii=False,
                          sort_keys=True).encode("utf-8")

    def send(self, notification: Notification) -> Deferred[None]:
        body = self.body(notification)
        return Deferred.fromCoroutine(withRetries(
            self.clock, lambda: self._attempt(notification.id, body), self.retryDelays,
            f"notification {notification.id} to {self.location}"))

    async def _attempt(self, notificationId: str, body: bytes) -> None:
        timestamp = str(int(self.clock.seconds()))
        # bytes, as Twisted's headers keep them (str names mixed with bytes
        # ones trip its name cache's comparisons)
        headers = {name.encode("ascii"): [value.encode("ascii")] for name, value in {
            "Content-Type": "application/json",
            "User-Agent": f"backupremote/{__version__}",
            ID_HEADER: notificationId,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self.__secret, timestamp, body),
        }.items()}
        async def exchange() -> tuple[int, bytes]:
            response = await self._http.post(self.url, data=body, headers=headers,
                                             allow_redirects=False,
                                             reactor=treqReactor(self.reactor))
            content = await treq.content(response)
            return response.code, content[:_ANSWER_CAP]

        pending = Deferred.fromCoroutine(exchange())
        pending.addTimeout(self.timeout, self.clock)
        try:
            code, answer = await pending
        except Exception as error:
            raise self._describe(error) from None
        if 200 <= code < 300:
            return
        quoted = " ".join(answer.decode("utf-8", "replace").split())[:200]
        refused = BackupRemoteError(
            NOTIFICATION_FAILED,
            f"{self.location} answered {code}" + (f": {quoted}" if quoted else ""))
        if code >= 500 or code in _RETRYABLE_STATUS:
            raise Retryable(refused)
        raise refused

    def _describe(self, error: BaseException) -> Exception:
        if isinstance(error, (CancelledError, ConnectingCancelledError)):
            return Retryable(BackupRemoteError(
                TIMEOUT, f"{self.location} did not answer within {self.timeout:g} s"))
        causes = _causes(error)
        for cause in causes:
            mismatch = self.verification.describe(cause, self.location)
            if mismatch is not None:
                return BackupRemoteError(NOTIFICATION_FAILED, mismatch.message,
                                         details=dict(mismatch.details))
        if any(isinstance(cause, (ConnectError, DNSLookupError)) for cause in causes):
            return Retryable(BackupRemoteError(
                NOTIFICATION_FAILED, f"cannot reach {self.location}: {_short(causes[-1])}"))
        return Retryable(BackupRemoteError(
            NOTIFICATION_FAILED, f"sending to {self.location} failed: {_short(causes[-1])}"))

    def close(self) -> Deferred[None]:
        return self._pool.closeCachedConnections()


def _causes(error: BaseException) -> list[BaseException]:
    """The low-level reasons inside Twisted's wrapper exceptions (C{ResponseFailed}...)."""
    reasons = getattr(error, "reasons", None)
    if not isinstance(reasons, list) or not reasons:
        return [error]
    found: list[BaseException] = []
    for reason in reasons:
        found.extend(_causes(reason.value if isinstance(reason, Failure) else reason))
    return found


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
