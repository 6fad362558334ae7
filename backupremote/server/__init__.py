"""
The backupremote server: lives next to the databases, acts only on command.

Embed it with L{makeService}; read L{backupremote.server.service} first.
"""

from backupremote.server.config import ServerConfig, loadServerConfig
from backupremote.server.service import makeService

__all__ = ["ServerConfig", "loadServerConfig", "makeService"]
