"""What the server knows about one connection, and about one request on it."""

from __future__ import annotations

from attrs import define, field, frozen

from backupremote.license import License
from backupremote.server.edge.requestlog import RequestLog


@define
class Session:
    """
    The state of one connection: who it is once authenticated, and how
    much it has misbehaved.
    """

    peer: str
    peerHost: str
    clientId: str | None = None
    license: License | None = None
    sessionId: str | None = None
    failedAuths: int = 0
    violations: int = 0
    authenticating: bool = False
    #: the stored secret hash the session authenticated against: the session
    #: ends when it changes (the operator disabled, removed or reset the client)
    credentialStamp: str | None = field(default=None, repr=False)
    #: the operator revoked the client; the connection is being closed
    revoked: bool = False

    @property
    def authenticated(self) -> bool:
        return self.clientId is not None and self.license is not None


@frozen
class RequestContext:
    """Handed to every responder: the request's id, its logger and session."""

    requestId: str
    session: Session
    log: RequestLog
