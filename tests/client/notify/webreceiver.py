"""
A real webhook receiver on 127.0.0.1 for the webhook channel's tests: a
twisted.web resource that checks each request's HMAC-SHA256 signature the
way docs/configuration.md tells receivers to (its own code, not the
channel's) and keeps what arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from attrs import frozen
from twisted.internet import reactor
from twisted.internet.ssl import PrivateCertificate
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate
from tests.client.notify.contract import Received

SECRET = b"webhook-Shared-secret-0123456789"


@frozen
class ReceivedRequest:
    path: bytes
    headers: dict[str, str]
    body: bytes
    valid: bool
    status: int

    def received(self) -> Received:
        payload = json.loads(self.body)
        raw = b"\n".join(f"{k}: {v}".encode() for k, v in self.headers.items())
        # the receiver's own URL (its path, which may hold a token) is left out
        return Received(payload["subject"], payload["text"], payload["id"],
                        raw + b"\n\n" + self.body)


class WebhookReceiver(Resource):
    """Answers 401 to a bad signature, else the next of C{answers} (default 200)."""

    isLeaf = True

    def __init__(self, secret: bytes = SECRET) -> None:
        super().__init__()
        self.secret = secret
        self.requests: list[ReceivedRequest] = []
        self.answers: list[int] = []

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read()
        headers = {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                   for k, v in request.requestHeaders.getAllRawHeaders()}
        timestamp = headers.get("x-backupremote-timestamp", "")
        expected = "sha256=" + hmac.new(self.secret, timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(headers.get("x-backupremote-signature", ""), expected)
        status = 401 if not valid else (self.answers.pop(0) if self.answers else 200)
        self.requests.append(ReceivedRequest(request.uri, headers, body, valid, status))
        request.setResponseCode(status)
        return b"bad signature" if not valid else b"taken" if status < 300 else b"no, thanks"

    def received(self) -> list[Received]:
        return [r.received() for r in self.requests if r.valid and 200 <= r.status < 300]

    def refuseNext(self) -> None:
        self.answers.append(400)


class QuietSite(Site):
    """No access log: it is the receiver's, and would quote its URL's token."""

    def log(self, request: Request) -> None:
        pass


def startReceiver(case: TestCase, tls: bool = False, secret: bytes = SECRET
                  ) -> tuple[WebhookReceiver, str, str | None]:
    """The receiver, its URL and (with C{tls}) its certificate's fingerprint."""
    receiver = WebhookReceiver(secret)
    site = QuietSite(receiver)
    fingerprint = None
    if tls:
        keyPem, certPem = generateServerCertificate(["localhost"], days=2)
        fingerprint = fingerprintOfPem(certPem)
        options: Any = PrivateCertificate.loadPEM(keyPem + certPem).options()
        port = reactor.listenSSL(0, site, options, interface="127.0.0.1")
    else:
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    scheme = "https" if tls else "http"
    return receiver, f"{scheme}://127.0.0.1:{port.getHost().port}/hooks/backup?token=t0k", \
        fingerprint
