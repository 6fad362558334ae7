"""
The registered clients, as the operator manages them: list, show, disable,
enable, remove, and a new secret.

The CLI changes the store while the daemon may be running in another
process; the daemon notices (L{backupremote.server.edge.revocation}). Every
change is written to the audit table with the peer C{operator}.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.configfile import configError
from backupremote.filewriting import writePrivateFile
from backupremote.server.config import ServerConfig
from backupremote.server.state.secrethash import generateSecret, hashSecret
from backupremote.server.state.store import ServerStore

#: The audit table's peer for a change made with the CLI on the server.
OPERATOR = "operator"


@frozen
class RegisteredClient:
    """One client as the operator sees it (never its secret or hash)."""

    clientId: str
    enabled: bool
    createdAt: str
    #: the last successful C{auth}, from the audit table
    lastAuthAt: str | None = None
    lastAuthPeer: str | None = None


class ClientRegistry:
    """The C{clients} table of a server store, for the operator."""

    def __init__(self, store: ServerStore) -> None:
        self._store = store
        self._db = store.connection

    def _lastAuths(self) -> dict[str, tuple[str, str | None]]:
        rows = self._db.execute(
            "SELECT clientId, at, peer FROM audit WHERE id IN ("
            " SELECT max(id) FROM audit WHERE action = 'auth' AND outcome = 'ok'"
            " AND clientId IS NOT NULL GROUP BY clientId)"
        )
        return {clientId: (at, peer) for clientId, at, peer in rows}

    def all(self) -> list[RegisteredClient]:
        """Every registered client, by id."""
        lastAuths = self._lastAuths()
        return [
            RegisteredClient(clientId, not disabled, createdAt,
                             *lastAuths.get(clientId, (None, None)))
            for clientId, disabled, createdAt in self._db.execute(
                "SELECT clientId, disabled, createdAt FROM clients ORDER BY clientId")
        ]

    def get(self, clientId: str) -> RegisteredClient:
        """
        One client.

        @raise BackupRemoteError: C{CONFIG_INVALID} if no client has that id.
        """
        for client in self.all():
            if client.clientId == clientId:
                return client
        raise configError(
            f"no client {clientId!r} is registered on this server "
            "(see `backupremote server clients list`)"
        )

    def setEnabled(self, clientId: str, enabled: bool) -> bool:
        """Enable or disable C{clientId}; whether that changed anything."""
        before = self.get(clientId)
        if before.enabled == enabled:
            return False
        self._db.execute("UPDATE clients SET disabled = ? WHERE clientId = ?",
                         (0 if enabled else 1, clientId))
        self._store.audit("admin.enable" if enabled else "admin.disable", "ok", clientId,
                          OPERATOR)
        return True

    def remove(self, clientId: str) -> None:
        """Forget C{clientId} and its secret (its configurations and runs stay)."""
        self.get(clientId)
        self._db.execute("DELETE FROM clients WHERE clientId = ?", (clientId,))
        self._store.audit("admin.remove", "ok", clientId, OPERATOR)

    def resetSecret(self, clientId: str, secretFile: FilePath | None = None) -> str:
        """
        Give C{clientId} a new secret and return it; only its hash is
        stored, and the old secret stops working. With C{secretFile}, the
        secret is also written there (a new file, mode 0600).
        """
        self.get(clientId)
        secret = generateSecret()
        if secretFile is not None:
            writePrivateFile(secretFile.path, (secret + "\n").encode("ascii"))
        self._db.execute("UPDATE clients SET secretHash = ? WHERE clientId = ?",
                         (hashSecret(secret), clientId))
        self._store.audit("admin.reset-secret", "ok", clientId, OPERATOR)
        return secret


@contextmanager
def openRegistry(config: ServerConfig) -> Iterator[ClientRegistry]:
    """
    C{with openRegistry(config) as clients:} the registry of the server's
    data folder, which must exist (C{CONFIG_INVALID} otherwise: a wrong
    C{--config} must not make an empty server).
    """
    if not config.dataDir.child("server.sqlite3").exists():
        raise configError(
            f"no server database in {config.dataDir.path}; is --config the "
            "server.toml that `backupremote server init` wrote?"
        )
    store = ServerStore.inDataDir(config.dataDir)
    try:
        yield ClientRegistry(store)
    finally:
        store.close()
