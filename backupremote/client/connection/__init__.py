"""
The connection to a server: L{IServerConnection}, its real implementation
L{ConnectionManager} (TLS, reconnecting), and the AMP protocol under it.
The in-memory twin is L{backupremote.testing.LoopbackConnection}.
"""

from backupremote.client.connection.credentials import Credentials
from backupremote.client.connection.interfaces import IServerConnection
from backupremote.client.connection.manager import (
    PERMANENT,
    ConnectionManager,
    ServerConnection,
    asBackupRemoteError,
)
from backupremote.client.connection.protocol import ClientProtocol

__all__ = [
    "PERMANENT",
    "ClientProtocol",
    "ConnectionManager",
    "Credentials",
    "IServerConnection",
    "ServerConnection",
    "asBackupRemoteError",
]
