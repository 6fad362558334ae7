"""Responders for ``auth``, ``capabilities`` and ``ping``, and what a session is offered."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from attrs import frozen
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.amp import CommandLocator

from backupremote.license import formatDate
from backupremote.protocol.errors import (
    ALREADY_AUTHENTICATED,
    API_VERSION_UNSUPPORTED,
    AUTH_RATE_LIMITED,
    BackupRemoteError,
)
from backupremote.protocol.models import Capabilities as CapabilitiesModel
from backupremote.protocol.models import EngineCapability, ServerOffer
from backupremote.protocol.options import CHECKSUMS
from backupremote.protocol.session import Auth, Capabilities, Ping
from backupremote.protocol.versions import SOFTWARE_VERSION, SUPPORTED_API_VERSIONS
from backupremote.server.edge.authenticator import Authenticator
from backupremote.server.edge.requestlog import RequestLog
from backupremote.server.edge.session import RequestContext, Session
from backupremote.server.engines.base import IEngine
from backupremote.server.machinery.compressors import availableCompressions
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.state.store import ServerStore
from backupremote.server.transfers.sender import CHUNK_LIMITS

if TYPE_CHECKING:
    from backupremote.server.edge.protocol import ServerProtocol


@frozen
class ServerOffers:
    """What this server offers: how to authenticate, and, after ``auth``, what to use."""

    engines: Mapping[str, IEngine]
    tools: ToolFinder
    #: whether a client may also prove itself with a TLS client certificate
    mutualTLS: bool = False

    def authMethods(self) -> list[str]:
        """How a client proves itself: always the secret, plus mTLS if set."""
        methods = ["secret+license"]
        if self.mutualTLS:
            methods.append("tls-client-certificate")
        return methods

    async def offer(self, session: Session) -> ServerOffer:
        """What an authenticated session may use: engines with their tools, compressions, chunking."""
        assert session.license is not None
        engines = []
        for name, engine in sorted(self.engines.items()):
            try:
                choice = await engine.chooseDumpTool(self.tools, None)
            except BackupRemoteError:
                continue
            engines.append(EngineCapability(name, choice.path, choice.version))
        return ServerOffer(
            engines=engines,
            compressions=await availableCompressions(self.tools),
            checksums=list(CHECKSUMS),
            chunkLimits=CHUNK_LIMITS,
            features=sorted(session.license.features),
        )


class SessionResponders(CommandLocator):
    """Opening a session and keeping it."""

    def __init__(self, authenticator: Authenticator, audit: ServerStore,
                 offers: ServerOffers, connection: ServerProtocol,
                 clock: IReactorTime) -> None:
        self.authenticator = authenticator
        self._audit = audit
        self.offers = offers
        self.connection = connection
        self.clock = clock

    @Auth.responder
    async def auth(
        self, request: RequestContext, clientId: str, secret: str,
        license: str, apiVersion: int,
    ) -> dict[str, Any]:
        session = request.session
        if session.authenticated or session.authenticating:
            raise BackupRemoteError(
                ALREADY_AUTHENTICATED,
                "this connection is already authenticated or authenticating",
            )
        session.authenticating = True
        try:
            if apiVersion not in SUPPORTED_API_VERSIONS:
                supported = ", ".join(map(str, SUPPORTED_API_VERSIONS))
                raise BackupRemoteError(
                    API_VERSION_UNSUPPORTED,
                    f"API version {apiVersion} is not supported; this server "
                    f"supports: {supported}",
                    details={"supported": list(SUPPORTED_API_VERSIONS)},
                )
            stamp = self.authenticator.credentialStamp(clientId)
            granted = await self.authenticator.authenticate(
                session.peerHost, clientId, secret, license, request.log.fields()
            )
        except BackupRemoteError as error:
            session.failedAuths += 1
            # a refusal during a lockout is summarised, not audited: the lockout itself is
            if error.code != AUTH_RATE_LIMITED:
                self._audit.audit("auth", error.code, None, session.peer, request.requestId)
                if self.authenticator.lockedOut(session.peerHost):
                    self._audit.audit("auth.lockout", "locked out", None, session.peer,
                                    request.requestId)
            raise
        finally:
            session.authenticating = False
        session.clientId = clientId
        session.license = granted
        session.credentialStamp = stamp
        session.sessionId = str(uuid.uuid4())
        self.connection.authenticated()
        self._audit.audit("auth", "ok", clientId, session.peer, request.requestId)
        RequestLog(request.requestId, clientId, session.peer).info("authenticated")
        return {
            "sessionId": session.sessionId,
            "serverVersion": SOFTWARE_VERSION,
            "apiVersion": apiVersion,
            "features": list(granted.features),
            "licenseExpiresAt": formatDate(granted.expiresAt),
        }

    @Capabilities.responder
    async def capabilities(self, request: RequestContext) -> dict[str, Any]:
        authenticated = request.session.authenticated
        offer = await self.offers.offer(request.session) if authenticated else None
        return {
            "capabilities": CapabilitiesModel(
                apiVersions=list(SUPPORTED_API_VERSIONS),
                serverVersion=SOFTWARE_VERSION,
                authMethods=self.offers.authMethods(),
                offer=offer,
                # after auth only, as the offer: a stranger learns nothing more
                serverTime=(datetime.fromtimestamp(
                    self.clock.seconds(), timezone.utc)
                    if authenticated else None),
            )
        }

    @Ping.responder
    def ping(self, request: RequestContext) -> dict[str, Any]:
        return {}
