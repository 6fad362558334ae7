"""
The backupremote client: owns the schedules, commands the server.

L{BackupRemoteClient} is the library (every call returns a Deferred);
L{makeService} is the daemon to embed in an application.
"""

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig, loadClientConfig
from backupremote.client.download.fetch import DownloadProgress
from backupremote.client.service import makeService
from backupremote.protocol.errors import BackupRemoteError

__all__ = [
    "BackupRemoteClient",
    "BackupRemoteError",
    "ClientConfig",
    "DownloadProgress",
    "loadClientConfig",
    "makeService",
]
