"""
The staging janitor: a service that sweeps staging at start and expires
artifacts past their time to live with a C{LoopingCall} on the injected clock.
"""

from __future__ import annotations


from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from backupremote.server.staging.artifacts import StagedArtifacts

_log = Logger(namespace="backupremote.server.staging")

#: Seconds between two expiry passes.
EXPIRY_INTERVAL = 60.0


class StagingJanitor(Service):
    """Start-up sweep, then periodic expiry, of L{StagedArtifacts}."""

    def __init__(self, artifacts: StagedArtifacts, clock: IReactorTime,
                 interval: float = EXPIRY_INTERVAL) -> None:
        self.artifacts = artifacts
        self.interval = interval
        self._loop = LoopingCall(self._expire)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        self.artifacts.sweep()
        self._loop.start(self.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _expire(self) -> None:
        try:
            gone = self.artifacts.expire()
        except Exception:  # noqa: BLE001 (logged; the next pass tries again)
            _log.failure("expiring staged artifacts failed; retrying at the next pass")
            return
        if gone:
            _log.info("expired the staging of {count} run(s)", count=len(gone))
