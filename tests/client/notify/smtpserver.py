"""
A real SMTP server on 127.0.0.1 for the email channel's tests: aiosmtpd in
its own thread, with STARTTLS on a test certificate, login (PLAIN/LOGIN)
checked against one user, and a handler that keeps every message.
"""

from __future__ import annotations

import socket
import ssl
import threading
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from attrs import frozen
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate
from tests.client.notify.contract import Received

USER = "notifier"
PASSWORD = "s3cret-Passw0rd-for-smtp"


@frozen
class KeptMessage:
    """A message the server accepted, and how its session got there."""

    mailFrom: str
    recipients: tuple[str, ...]
    content: bytes
    tls: bool
    login: str | None

    def received(self) -> Received:
        message = message_from_bytes(self.content, policy=policy.default)
        body = message.get_body(("plain",))
        assert body is not None
        return Received(str(message["Subject"]), body.get_content(),
                        str(message["X-BackupRemote-Notification"]), self.content)


class KeepingHandler:
    """Keeps what arrives; refuses the next message when told to."""

    def __init__(self) -> None:
        self.messages: list[KeptMessage] = []
        self.refusals: list[str] = []
        #: what went wrong in a session (a TLS handshake the client broke off)
        self.errors: list[Exception] = []
        self.lock = threading.Lock()

    async def handle_exception(self, error: Exception) -> str:
        with self.lock:
            self.errors.append(error)
        return f"500 Error: {type(error).__name__}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.refusals:
                return self.refusals.pop(0)
            login = session.auth_data if session.authenticated else None
            self.messages.append(KeptMessage(
                envelope.mail_from, tuple(envelope.rcpt_tos),
                envelope.original_content or envelope.content,
                session.ssl is not None, login))
        return "250 2.0.0 kept"


def _freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SMTPTestServer:
    """
    The server; C{starttls=False} offers no STARTTLS (and then no login),
    C{user=None} asks for no login.
    """

    def __init__(self, folder: FilePath, *, starttls: bool = True,
                 user: str | None = USER, password: str = PASSWORD,
                 certificate: tuple[bytes, bytes] | None = None) -> None:
        self.handler = KeepingHandler()
        self.user = user
        self.password = password
        self.logins: list[tuple[str, bool]] = []
        keyPem, self.certPem = certificate or generateServerCertificate(["localhost"], days=2)
        self.fingerprint = fingerprintOfPem(self.certPem)
        folder.makedirs(ignoreExistingDirectory=True)
        self.certFile = folder.child("smtp.crt")
        self.certFile.setContent(self.certPem)
        keyFile = folder.child("smtp.key")
        keyFile.setContent(keyPem)
        options: dict[str, Any] = {}
        if starttls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certFile.path, keyFile.path)
            options.update(tls_context=context, require_starttls=True)
        if user is not None:
            options.update(authenticator=self._authenticate, auth_required=True,
                           auth_require_tls=starttls)
        self.port = _freePort()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=10, **options)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == self.user
              and data.password.decode() == self.password)
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False,
                          auth_data=data.login.decode() if ok else None)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def received(self) -> list[Received]:
        with self.handler.lock:
            return [m.received() for m in self.handler.messages]

    def refuseNext(self, answer: str = "554 5.7.1 refused by the test") -> None:
        with self.handler.lock:
            self.handler.refusals.append(answer)


def startSMTPServer(case: TestCase, **options: Any) -> SMTPTestServer:
    server = SMTPTestServer(FilePath(case.mktemp()), **options)
    server.start()
    case.addCleanup(server.stop)
    return server
