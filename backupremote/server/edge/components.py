"""
The server's components: what every connection of one server shares.

Built once by the service (the composition root, L{buildComponents}); each
connection's L{ServerProtocol} uses it for the gate, the caps and the
bookkeeping of connections, and its responder groups get only the
collaborators they use (see L{backupremote.server.edge.factory}).
"""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime

from backupremote.protocol.boxlimits import BoxLimit
from backupremote.protocol.commands import COMMANDS
from backupremote.server.config import ServerConfig
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.edge.admission import PreAuthAdmission
from backupremote.server.edge.authenticator import Authenticator
from backupremote.server.edge.refusals import PreAuthRefusals
from backupremote.server.edge.requestlog import RequestIds
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.responders.session import ServerOffers
from backupremote.server.runs.manager import RunManager
from backupremote.server.runs.scripts import PostScripts
from backupremote.server.staging.artifacts import StagedArtifacts
from backupremote.server.state.changes import StampedCache
from backupremote.server.state.metrics import Metrics
from backupremote.server.state.store import ServerStore
from backupremote.server.transfers.registry import TransferRegistry


@define
class ServerComponents:
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
    #: Ids for the requests that come without one.
    requestIds: RequestIds = field(factory=RequestIds)
    #: Answers sent many times unchanged, encoded once, kept while the store is unchanged.
    answers: StampedCache[Any] = field(default=None)

    def __attrs_post_init__(self) -> None:
        if self.answers is None:
            self.answers = StampedCache(self.store.changes)
        if self.refusals is None:
            self.refusals = PreAuthRefusals(self.clock)
        if self.admission is None:
            self.admission = PreAuthAdmission(
                self.config.maxPreAuthConnections, self.config.maxPreAuthConnectionsPerPeer,
            )
