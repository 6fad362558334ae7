"""
SIGHUP for the server daemon: reopen the log file and reload the TLS key
and certificate, without a restart.

After logrotate moves the JSON log file away, SIGHUP makes the server write
to a new file at the configured path. After C{backupremote server
rotate-cert --activate} (or any change of the key and certificate files),
it makes new connections get the new certificate; open connections keep
theirs. Nothing else of server.toml is read again: other settings need a
restart (docs/operations.md).

L{HangupService} installs the handler while it runs; the twistd plugin
(L{backupremote.server.tap}) adds it. An application that embeds the
server can call L{reopenAndReload} on its own signal instead.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

from twisted.application.service import IServiceCollection, Service
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

from backupremote.logfile import LOG_FILE_SERVICE
from backupremote.protocol.errors import BackupRemoteError

_log = Logger(namespace="backupremote.server")


def reopenAndReload(top: IServiceCollection) -> None:
    """
    Reopen the log file of the server service C{top} (if it has one), then
    reload its TLS key and certificate; each outcome is logged, and a
    failure of one does not stop the other.
    """
    try:
        logFile = top.getServiceNamed(LOG_FILE_SERVICE)
    except KeyError:
        logFile = None
    if logFile is not None:
        try:
            logFile.reopen()
        except OSError as error:
            _log.error("SIGHUP: could not reopen the log file {path} ({error}); "
                       "still writing to the old one", path=logFile.path.path,
                       error=error.strerror)
        else:
            _log.info("SIGHUP: reopened the log file {path}", path=logFile.path.path)
    try:
        fingerprint = top.getServiceNamed("listener").reloadCertificate()
    except BackupRemoteError as error:
        _log.error("SIGHUP: kept the TLS certificate in use; the files cannot be used: "
                   "{errorMessage}", errorMessage=error.message)
    else:
        _log.info("SIGHUP: reloaded the TLS key and certificate; new connections get "
                  "the certificate {fingerprint}", fingerprint=fingerprint)


class HangupService(Service):
    """While running, SIGHUP runs C{onHangup} on the reactor thread."""

    def __init__(self, onHangup: Callable[[], None], reactor: IReactorThreads) -> None:
        self._onHangup = onHangup
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self.received)

    def stopService(self) -> None:
        super().stopService()
        signal.signal(signal.SIGHUP,
                      signal.SIG_DFL if self._previous is None else self._previous)
        self._previous = None

    def received(self, signum: int, frame: Any) -> None:
        """The signal handler: only schedules the work (a handler may interrupt anything)."""
        self._reactor.callFromThread(self._hangup)

    def _hangup(self) -> None:
        try:
            self._onHangup()
        except Exception:
            _log.failure("SIGHUP handling failed")
