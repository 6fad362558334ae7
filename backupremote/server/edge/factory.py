"""
Builds one L{ServerProtocol} per accepted connection, with the responder
groups it answers with; each group gets only the collaborators it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.protocol import Factory

from backupremote.server.edge.components import ServerComponents
from backupremote.server.edge.protocol import ServerProtocol
from backupremote.server.responders.groups import RESPONDER_GROUPS, ResponderGroup


def describePeer(address: Any) -> tuple[str, str]:
    """(C{host:port}, C{host}) of a peer address, for logs and throttling."""
    host = getattr(address, "host", None) or str(address)
    port = getattr(address, "port", None)
    return (f"{host}:{port}" if port is not None else host), host


class ServerFactory(Factory):
    """Connections of one server, sharing its components."""

    def __init__(self, core: ServerComponents,
                 responderGroups: Sequence[ResponderGroup] = RESPONDER_GROUPS) -> None:
        self.core = core
        self.responderGroups = tuple(responderGroups)

    def buildProtocol(self, addr: Any) -> ServerProtocol:
        peer, host = describePeer(addr)
        protocol = ServerProtocol(self.core, peer, host, self.responderGroups)
        protocol.factory = self
        return protocol
