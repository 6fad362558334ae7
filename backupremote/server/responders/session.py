"""Responders for ``auth``, ``capabilities`` and ``ping``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from twisted.protocols.amp import CommandLocator

from backupremote.license import formatDate
from backupremote.protocol.errors import (
    ALREADY_AUTHENTICATED,
    API_VERSION_UNSUPPORTED,
    AUTH_RATE_LIMITED,
    BackupRemoteError,
)
from backupremote.protocol.models import Capabilities as CapabilitiesModel
from backupremote.protocol.session import Auth, Capabilities, Ping
from backupremote.protocol.versions import SOFTWARE_VERSION, SUPPORTED_API_VERSIONS
from backupremote.server.requestlog import RequestLog
from backupremote.server.session import RequestContext

if TYPE_CHECKING:
    from backupremote.server.core import ServerCore
    from backupremote.server.protocol import ServerProtocol


class SessionResponders(CommandLocator):
    """Opening a session and keeping it."""

    def __init__(self, core: ServerCore, connection: ServerProtocol) -> None:
        self.core = core
        self.connection = connection

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
            stamp = self.core.authenticator.credentialStamp(clientId)
            granted = await self.core.authenticator.authenticate(
                session.peerHost, clientId, secret, license, request.log.fields()
            )
        except BackupRemoteError as error:
            session.failedAuths += 1
            # a refusal during a lockout is summarised, not audited: the lockout itself is
            if error.code != AUTH_RATE_LIMITED:
                self.core.audit("auth", error.code, None, session.peer, request.requestId)
                if self.core.authenticator.lockedOut(session.peerHost):
                    self.core.audit("auth.lockout", "locked out", None, session.peer,
                                    request.requestId)
            raise
        finally:
            session.authenticating = False
        session.clientId = clientId
        session.license = granted
        session.credentialStamp = stamp
        session.sessionId = str(uuid.uuid4())
        self.connection.authenticated()
        self.core.audit("auth", "ok", clientId, session.peer, request.requestId)
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
        offer = await self.core.offer(request.session) if request.session.authenticated else None
        return {
            "capabilities": CapabilitiesModel(
                apiVersions=list(SUPPORTED_API_VERSIONS),
                serverVersion=SOFTWARE_VERSION,
                authMethods=self.core.authMethods(),
                offer=offer,
            )
        }

    @Ping.responder
    def ping(self, request: RequestContext) -> dict[str, Any]:
        return {}
