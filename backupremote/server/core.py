"""
The server core: the collaborators every connection shares.

Built once by the service; each connection gets a L{ServerProtocol} that
refers back to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.protocols.amp import CommandLocator

from backupremote.protocol.boxlimits import BoxLimit
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.models import EngineCapability, ServerOffer
from backupremote.protocol.options import CHECKSUMS
from backupremote.server.admission import PreAuthAdmission
from backupremote.server.authenticator import Authenticator
from backupremote.server.compressors import availableCompressions
from backupremote.server.config import ServerConfig
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.engines.base import IEngine
from backupremote.server.metrics import Metrics
from backupremote.server.refusals import PreAuthRefusals
from backupremote.server.responders.databases import DatabaseResponders
from backupremote.server.responders.metrics import MetricsResponders
from backupremote.server.responders.runs import RunResponders
from backupremote.server.responders.session import SessionResponders
from backupremote.server.responders.transfers import TransferResponders
from backupremote.server.runs.manager import RunManager
from backupremote.server.session import Session
from backupremote.server.store import ServerStore
from backupremote.server.tools import ToolFinder

ResponderGroup = Callable[..., CommandLocator]

#: Every responder group a connection answers with; later areas add theirs.
RESPONDER_GROUPS: tuple[ResponderGroup, ...] = (
    SessionResponders, DatabaseResponders, RunResponders, TransferResponders, MetricsResponders,
)


def commandsOf(groups: tuple[ResponderGroup, ...]) -> list[type]:
    """Every command the responder groups answer."""
    return [command for group in groups
            for command, _ in getattr(group, "_commandDispatch").values()]


@define
class ServerCore:
    """Shared state and services of one running server."""

    config: ServerConfig
    clock: IReactorTime
    store: ServerStore
    authenticator: Authenticator
    metrics: Metrics
    tools: ToolFinder
    databases: DatabaseConfigs
    runs: RunManager
    engines: Mapping[str, IEngine]
    responderGroups: tuple[ResponderGroup, ...] = RESPONDER_GROUPS
    connections: set = field(factory=set)
    #: L{backupremote.server.staging.artifacts.StagedArtifacts}
    artifacts: Any = None
    #: L{backupremote.server.transfers.registry.TransferRegistry}
    transfers: Any = None
    #: L{backupremote.server.runs.scripts.PostScripts}
    scripts: Any = None
    #: When this core was made (the clock's seconds), for C{getMetrics}.
    startedAt: float = field(default=None)
    #: Connections that have not authenticated yet, capped.
    admission: PreAuthAdmission = field(default=None)
    #: What unauthenticated peers did wrong, summarised for the log.
    refusals: PreAuthRefusals = field(default=None)
    #: The largest box an authenticated client may send (the widest command, with margin).
    boxLimit: BoxLimit = field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.startedAt is None:
            self.startedAt = self.clock.seconds()
        if self.refusals is None:
            self.refusals = PreAuthRefusals(self.clock)
        if self.admission is None:
            self.admission = PreAuthAdmission(
                self.config.maxPreAuthConnections, self.config.maxPreAuthConnectionsPerPeer,
            )
        if self.boxLimit is None:
            self.boxLimit = BoxLimit.forCommands(commandsOf(self.responderGroups))

    def authMethods(self) -> list[str]:
        """How a client proves itself: always the secret, plus mTLS if set."""
        methods = ["secret+license"]
        if self.config.clientCA is not None:
            methods.append("tls-client-certificate")
        return methods

    async def offer(self, session: Session) -> ServerOffer:
        """What an authenticated session may use: engines with their tools, compressions."""
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
            features=sorted(session.license.features),
        )

    def audit(
        self, action: str, outcome: str, clientId: str | None,
        peer: str, requestId: str,
    ) -> None:
        self.store.audit(action, outcome, clientId, peer, requestId)
