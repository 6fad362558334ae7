"""Commands that open and keep a session: ``auth``, ``capabilities``, ``ping``."""

from __future__ import annotations

from twisted.protocols import amp

from backupremote.protocol.base import Request
from backupremote.protocol.models import Capabilities as CapabilitiesModel
from backupremote.protocol.structured import Structured


class Auth(Request):
    """Authenticate this connection as a registered client with its licence."""

    commandName = b"auth"
    preAuth = True
    feature = None
    arguments = [
        (b"clientId", amp.Unicode()),
        (b"secret", amp.Unicode()),
        (b"license", amp.Unicode()),
        (b"apiVersion", amp.Integer()),
    ]
    response = [
        (b"sessionId", amp.Unicode()),
        (b"serverVersion", amp.Unicode()),
        (b"apiVersion", amp.Integer()),
        (b"features", amp.ListOf(amp.Unicode())),
        (b"licenseExpiresAt", amp.Unicode()),
    ]


class Capabilities(Request):
    """What the server offers; only versions and auth methods before ``auth``."""

    commandName = b"capabilities"
    preAuth = True
    arguments: list = []
    response = [(b"capabilities", Structured(CapabilitiesModel, answer=True))]


class Ping(Request):
    """Keep-alive, sent by either side; answered with nothing."""

    commandName = b"ping"
    feature = None
    arguments: list = []
    response: list = []
