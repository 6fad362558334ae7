"""
The email channel: Twisted's ESMTP client, STARTTLS with the mail server's
certificate checked (the system's CAs, a CA file or a pinned fingerprint),
login when a user is set, a timeout on every wait, and retries on the
injected clock for refusals that may pass (no connection, a 4xx answer).

The password is handed to Twisted's sender and to nothing else: errors are
described from the server's answer code and text, never from the client's
session transcript, and the password is never put in a message, a log
line or a command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from email.utils import formatdate
from io import BytesIO
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.logger import Logger
from twisted.mail import smtp
from zope.interface import implementer

from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.notify.interface import INotificationChannel
from backupremote.client.notify.messages import Notification
from backupremote.client.notify.retry import RETRY_DELAYS, SMTP_TIMEOUT, Retryable, withRetries
from backupremote.protocol.errors import NOTIFICATION_FAILED, TIMEOUT, BackupRemoteError
from backupremote.reactors import IConnectingReactor

_log = Logger(namespace="backupremote.client.notify")


class _SenderFactory(smtp.ESMTPSenderFactory):
    """Twisted's sender factory, its protocol's timeouts on our clock."""

    clock: IReactorTime

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.callLater = self.clock.callLater
        return protocol


@implementer(INotificationChannel)
class EmailChannel:
    """
    Mail to C{recipients} through the server at C{host}:C{port}.

    @param starttls: upgrade the connection with STARTTLS, and refuse a
        server that does not offer it. Without it no password may be set
        (it would cross the network in clear).
    @param verification: what the server's certificate is checked against
        (a CA file, pinned fingerprints, else the system's CAs).
    """

    name = "email"

    def __init__(self, reactor: IConnectingReactor, host: str, port: int, sender: str,
                 recipients: Sequence[str], *, starttls: bool = True,
                 user: str | None = None, password: str | None = None,
                 verification: PeerVerification | None = None,
                 timeout: float = SMTP_TIMEOUT, clock: IReactorTime | None = None,
                 retryDelays: Sequence[float] = RETRY_DELAYS) -> None:
        if (user is None) != (password is None):
            raise ValueError("a user and a password go together")
        if user is not None and not starttls:
            raise ValueError("a password is never sent without STARTTLS")
        if not recipients:
            raise ValueError("no recipient")
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.starttls = starttls
        self.user = user
        self.__password = password
        self.verification = verification or PeerVerification()
        self.timeout = timeout
        self.retryDelays = tuple(retryDelays)

    def __repr__(self) -> str:
        return f"<EmailChannel {self.user or ''}@{self.host}:{self.port}>"

    @property
    def location(self) -> str:
        return f"the mail server {self.host}:{self.port}"

    def message(self, notification: Notification) -> bytes:
        """The message (UTF-8 text, quoted-printable where needed)."""
        # LF line ends: Twisted's sender turns each into CRLF on the wire
        message = EmailMessage(policy=DEFAULT_POLICY)
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = notification.subject
        message["Date"] = formatdate(notification.createdAt.timestamp(), usegmt=True)
        domain = self.sender.rpartition("@")[2] or "backupremote.invalid"
        message["Message-ID"] = f"<{notification.id}@{domain}>"
        message["Auto-Submitted"] = "auto-generated"
        message["X-BackupRemote-Notification"] = notification.id
        message.set_content(notification.text, charset="utf-8")
        return message.as_bytes()

    def send(self, notification: Notification) -> Deferred[None]:
        message = self.message(notification)
        return Deferred.fromCoroutine(withRetries(
            self.clock, lambda: self._attempt(message), self.retryDelays,
            f"email to {len(self.recipients)} recipient(s) via {self.location}"))

    def _creator(self) -> IOpenSSLClientConnectionCreator:
        return self.verification.creatorForNetloc(self.host.encode("idna"), self.port)

    async def _attempt(self, message: bytes) -> None:
        factory: _SenderFactory | None = None
        connector: Any = None

        def cancel(_: Deferred[Any]) -> None:
            assert factory is not None
            factory.sendFinished = True
            protocol = factory.currentProtocol
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abortConnection()
            elif connector is not None:
                connector.disconnect()

        result: Deferred[Any] = Deferred(cancel)
        factory = _SenderFactory(
            None if self.user is None else self.user.encode("utf-8"),
            None if self.__password is None else self.__password.encode("utf-8"),
            self.sender, list(self.recipients),
            BytesIO(message), result, retries=0, timeout=self.timeout,
            contextFactory=self._creator() if self.starttls else None,
            requireAuthentication=self.user is not None,
            requireTransportSecurity=self.starttls)
        factory.clock = self.clock
        connector = self.reactor.connectTCP(self.host, self.port, factory,
                                            timeout=self.timeout)
        # a bound on the whole exchange, whatever stalls (a TLS handshake
        # sends no line, so the per-answer timeout would not see it)
        result.addTimeout(self.timeout * 4, self.clock)
        try:
            accepted, answers = await result
        except Exception as error:
            raise self._describe(error) from None
        refused = [(address, code) for address, code, _ in answers if code not in smtp.SUCCESS]
        if refused:
            _log.warn("{location} accepted the notification for {accepted} recipient(s) and "
                      "refused {refused}", location=self.location, accepted=accepted,
                      refused=", ".join(f"{a.decode('ascii', 'replace')} ({c})"
                                        for a, c in refused))

    def _describe(self, error: BaseException) -> Exception:
        """A L{Retryable} or a L{BackupRemoteError} saying what went wrong, without a secret."""
        where = self.location
        if isinstance(error, (CancelledError, TimeoutError)) or isinstance(
                error, smtp.SMTPTimeoutError):
            return Retryable(BackupRemoteError(
                TIMEOUT, f"{where} did not answer within {self.timeout:g} s"))
        cause = error.__cause__ if isinstance(error, smtp.SMTPConnectError) else error
        if isinstance(cause, (SSL.Error, VerificationError)):
            return BackupRemoteError(
                NOTIFICATION_FAILED,
                f"{where}: TLS failed: its certificate is not the one "
                f"{self.verification.description} trusts, or the handshake failed "
                f"({_short(cause)})")
        if isinstance(error, smtp.TLSRequiredError):
            return BackupRemoteError(
                NOTIFICATION_FAILED,
                f"{where} does not offer STARTTLS; the client never sends mail to it "
                "unencrypted (set starttls = false only for a relay without a login)")
        if isinstance(error, smtp.AUTHRequiredError):
            return BackupRemoteError(
                NOTIFICATION_FAILED,
                f"{where} offers no login (AUTH) the client can use for user {self.user}")
        if isinstance(error, (smtp.AUTHDeclinedError, smtp.AuthenticationError)):
            return BackupRemoteError(
                NOTIFICATION_FAILED,
                f"{where} refused the login of user {self.user}: {_answer(error)}")
        if isinstance(error, smtp.SMTPConnectError) and error.code < 0:
            return Retryable(BackupRemoteError(
                NOTIFICATION_FAILED, f"cannot connect to {where}: {_short(cause)}"))
        if isinstance(error, smtp.SMTPClientError):
            answer = BackupRemoteError(
                NOTIFICATION_FAILED, f"{where} refused the message: {_answer(error)}")
            # 4xx: a temporary refusal, try again; 5xx: it will not pass
            return Retryable(answer) if 400 <= error.code < 500 else answer
        if isinstance(error, BackupRemoteError):
            return error
        return Retryable(BackupRemoteError(
            NOTIFICATION_FAILED, f"sending to {where} failed: {_short(error)}"))


def _answer(error: smtp.SMTPClientError) -> str:
    """The server's answer code and text (never the session's transcript)."""
    text = error.resp.decode("utf-8", "replace") if isinstance(error.resp, bytes) \
        else str(error.resp)
    text = " ".join(text.split())[:300]
    return f"{error.code:03d} {text}" if error.code > 0 else text


def _short(error: BaseException | None) -> str:
    if error is None:
        return "connection lost"
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
