"""
The server core: the collaborators every connection shares.

Built once by the service; each connection gets a L{ServerProtocol} that
refers back to it.
"""

from __future__ import annotations

from typing import Callable

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.amp import CommandLocator

from backupremote.protocol.models import ServerOffer
from backupremote.server.authenticator import Authenticator
from backupremote.server.config import ServerConfig
from backupremote.server.metrics import Metrics
from backupremote.server.responders.session import SessionResponders
from backupremote.server.session import Session
from backupremote.server.store import ServerStore

ResponderGroup = Callable[..., CommandLocator]

#: Every responder group a connection answers with; later areas add theirs.
RESPONDER_GROUPS: tuple[ResponderGroup, ...] = (SessionResponders,)


@define
class ServerCore:
    """Shared state and services of one running server."""

    config: ServerConfig
    clock: IReactorTime
    store: ServerStore
    authenticator: Authenticator
    metrics: Metrics
    responderGroups: tuple[ResponderGroup, ...] = RESPONDER_GROUPS
    connections: set = field(factory=set)

    def authMethods(self) -> list[str]:
        """How a client proves itself: always the secret, plus mTLS if set."""
        methods = ["secret+license"]
        if self.config.clientCA is not None:
            methods.append("tls-client-certificate")
        return methods

    def offer(self, session: Session) -> ServerOffer:
        """What an authenticated session may use."""
        assert session.license is not None
        return ServerOffer(features=sorted(session.license.features))

    def audit(
        self, action: str, outcome: str, clientId: str | None,
        peer: str, requestId: str,
    ) -> None:
        self.store.audit(action, outcome, clientId, peer, requestId)
