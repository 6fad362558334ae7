"""
The server core: what every connection of one server shares.

Built once by the service (the composition root, L{buildCore}); each
connection's L{ServerProtocol} uses it for the gate, the caps and the
bookkeeping of connections, and its responder groups get only the
collaborators they use (see L{backupremote.server.factory}).
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime

from backupremote.protocol.boxlimits import BoxLimit
from backupremote.protocol.commands import COMMANDS
from backupremote.server.admission import PreAuthAdmission
from backupremote.server.authenticator import Authenticator
from backupremote.server.config import ServerConfig
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.metrics import Metrics
from backupremote.server.refusals import PreAuthRefusals
from backupremote.server.responders.session import ServerOffers
from backupremote.server.runs.manager import RunManager
from backupremote.server.runs.scripts import PostScripts
from backupremote.server.staging.artifacts import StagedArtifacts
from backupremote.server.store import ServerStore
from backupremote.server.tools import ToolFinder
from backupremote.server.transfers.registry import TransferRegistry


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
    artifacts: StagedArtifacts
    transfers: TransferRegistry
    scripts: PostScripts
    offers: ServerOffers
    #: the live connections (L{ServerProtocol}s)
    connections: set[Any] = field(factory=set)
    #: Connections that have not authenticated yet, capped.
    admission: PreAuthAdmission = field(default=None)
    #: What unauthenticated peers did wrong, summarised for the log.
    refusals: PreAuthRefusals = field(default=None)
    #: The largest box an authenticated client may send (the widest command, with margin).
    boxLimit: BoxLimit = field(factory=lambda: BoxLimit.forCommands(list(COMMANDS.values())))

    def __attrs_post_init__(self) -> None:
        if self.refusals is None:
            self.refusals = PreAuthRefusals(self.clock)
        if self.admission is None:
            self.admission = PreAuthAdmission(
                self.config.maxPreAuthConnections, self.config.maxPreAuthConnectionsPerPeer,
            )
