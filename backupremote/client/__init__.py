"""
The backupremote client: owns the schedules, commands the server.

L{BackupRemoteClient} is the library (every call returns a Deferred);
L{makeService} is the daemon to embed in an application.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backupremote.client.api import BackupRemoteClient
    from backupremote.client.config import ClientConfig, loadClientConfig
    from backupremote.client.download.fetch import DownloadProgress
    from backupremote.client.service import makeService
    from backupremote.protocol.errors import BackupRemoteError

#: name -> its module, imported on first use: importing any module of the
#: package runs this one, and the daemon's modules (scheduler, delivery,
#: dashboard...) have no place in a CLI command that asks a server one thing
_EXPORTS = {
    "BackupRemoteClient": "backupremote.client.api",
    "BackupRemoteError": "backupremote.protocol.errors",
    "ClientConfig": "backupremote.client.config",
    "DownloadProgress": "backupremote.client.download.fetch",
    "loadClientConfig": "backupremote.client.config",
    "makeService": "backupremote.client.service",
}

__all__ = [
    "BackupRemoteClient",
    "BackupRemoteError",
    "ClientConfig",
    "DownloadProgress",
    "loadClientConfig",
    "makeService",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
