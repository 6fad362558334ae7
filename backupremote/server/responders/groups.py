"""
The responder groups a connection answers with, each built with only the
collaborators it uses (L{ServerComponents} is the composition root's record of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from twisted.protocols.amp import CommandLocator

from backupremote.server.responders.databases import DatabaseResponders
from backupremote.server.responders.metrics import MetricsResponders
from backupremote.server.responders.runs import RunResponders
from backupremote.server.responders.session import SessionResponders
from backupremote.server.responders.transfers import TransferResponders

if TYPE_CHECKING:
    from backupremote.server.edge.components import ServerComponents
    from backupremote.server.edge.protocol import ServerProtocol

#: Builds one connection's responders from the server's core and the connection.
ResponderGroup = Callable[["ServerComponents", "ServerProtocol"], CommandLocator]


def sessionResponders(core: ServerComponents, connection: ServerProtocol) -> CommandLocator:
    return SessionResponders(core.authenticator, core.store, core.offers, connection,
                             core.clock)


def databaseResponders(core: ServerComponents, connection: ServerProtocol) -> CommandLocator:
    return DatabaseResponders(core.databases, core.store, core.answers)


def runResponders(core: ServerComponents, connection: ServerProtocol) -> CommandLocator:
    return RunResponders(core.runs, connection, core.answers)


def transferResponders(core: ServerComponents, connection: ServerProtocol) -> CommandLocator:
    return TransferResponders(core.artifacts, core.transfers, connection)


def metricsResponders(core: ServerComponents, connection: ServerProtocol) -> CommandLocator:
    return MetricsResponders(core.metrics, core.clock, core.runs, core.artifacts,
                             core.transfers)


#: Every responder group a connection answers with; later areas add theirs.
RESPONDER_GROUPS: tuple[ResponderGroup, ...] = (
    sessionResponders, databaseResponders, runResponders, transferResponders,
    metricsResponders,
)
