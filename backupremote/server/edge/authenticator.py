"""
Deciding whether an ``auth`` succeeds.

Unknown client and wrong secret are the same C{AUTH_FAILED}; the secret is
checked against a slow salted hash off the reactor thread; the licence is
only judged once the secret is right, so nobody learns anything about a
client without its secret.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred

from backupremote.license import License, LicenseVerifier
from backupremote.protocol.errors import (
    AUTH_FAILED,
    AUTH_RATE_LIMITED,
    BackupRemoteError,
)
from backupremote.protocol.features import REMOTE_CONTROL
from backupremote.server.edge.throttle import PeerThrottle
from backupremote.server.state.changes import StampedCache
from backupremote.server.state.metrics import Metrics
from backupremote.server.state.secrethash import verifySecret
from backupremote.server.state.store import ServerStore

MAX_CLIENT_ID = 128

RunInThread = Callable[..., "Deferred[Any]"]


class Authenticator:
    """Checks client credentials and licences for the whole server."""

    def __init__(
        self,
        store: ServerStore,
        verifier: LicenseVerifier,
        throttle: PeerThrottle,
        metrics: Metrics,
        runInThread: RunInThread,
    ) -> None:
        self._store = store
        self._verifier = verifier
        self._throttle = throttle
        self._metrics = metrics
        self._runInThread = runInThread
        #: the stored hashes of authenticated sessions' clients, while the store is unchanged
        self._sessionHashes: StampedCache[str | None] = StampedCache(store.changes)

    @property
    def verifier(self) -> LicenseVerifier:
        """What judges licences (at C{auth} and at each later command)."""
        return self._verifier

    async def authenticate(
        self, peerHost: str, clientId: str, secret: str, token: str,
        context: Mapping[str, str],
    ) -> License:
        """The client's verified licence, or a L{BackupRemoteError}."""
        if not self._throttle.attempt(peerHost):
            self._metrics.increment("auth.rate_limited")
            wait = self._throttle.retryAfter(peerHost)
            raise BackupRemoteError(
                AUTH_RATE_LIMITED,
                f"too many failed authentications from this address; "
                f"retry in {int(wait) + 1} seconds",
            )
        stored = self._store.secretHashOf(clientId) if len(clientId) <= MAX_CLIENT_ID else None
        try:
            matches = await self._runInThread(verifySecret, stored, secret)
        except BaseException:
            self._throttle.failed(peerHost)
            raise
        if not matches:
            self._throttle.failed(peerHost)
            self._metrics.increment("auth.failed")
            raise BackupRemoteError(
                AUTH_FAILED, "unknown client id or wrong secret"
            )
        self._throttle.succeeded(peerHost)
        license = self._verifier.verify(token, clientId, REMOTE_CONTROL, context)
        self._metrics.increment("auth.succeeded")
        return license

    def lockedOut(self, peerHost: str) -> bool:
        """Whether C{peerHost} may not try again for now."""
        return self._throttle.retryAfter(peerHost) > 0

    def credentialStamp(self, clientId: str) -> str | None:
        """
        What a session of C{clientId} is later checked against
        (L{stillValid}): its stored secret hash now, C{None} if the client is
        unknown or disabled. Read in the same reactor turn as L{authenticate}
        reads it, so it is the hash the secret is verified against.
        """
        return self._store.secretHashOf(clientId) if len(clientId) <= MAX_CLIENT_ID else None

    def stillValid(self, clientId: str, stamp: str | None) -> bool:
        """
        Whether a session that authenticated with C{stamp} may go on: the
        client is still registered and enabled, with the same secret. Asked
        before every command of a session, so the hash is read again only
        when the store changed (L{StampedCache}): a revocation still takes
        effect at the very next command.
        """
        current = self._sessionHashes.get(clientId, lambda: self._store.secretHashOf(clientId))
        return (current is not None and stamp is not None
                and hmac.compare_digest(current, stamp))

    def recheck(
        self, license: License, clientId: str, feature: str, context: Mapping[str, str]
    ) -> None:
        """Re-check a session's licence for one command (it may have expired)."""
        self._verifier.check(license, clientId, feature, context)
