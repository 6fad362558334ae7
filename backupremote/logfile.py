"""A service that copies every log event, as JSON lines, to a file."""

from __future__ import annotations

import os
from typing import IO, Any

from twisted.application.service import MultiService, Service
from twisted.logger import globalLogPublisher, jsonFileLogObserver
from twisted.python.filepath import FilePath

from backupremote.logcontext import withLogContext
from backupremote.private import makePrivateFolder


class JSONLogFileService(Service):
    """
    While running, append every event to C{path} (mode 0600) as JSON, with
    the fields bound by L{backupremote.logcontext} (and C{defaults}) that the
    event does not carry itself.
    """

    def __init__(self, path: FilePath, publisher: Any = globalLogPublisher,
                 defaults: dict[str, str] | None = None) -> None:
        self.path = path
        self._defaults = dict(defaults or {})
        self._publisher = publisher
        self._file: IO[str] | None = None
        self._observer: Any = None

    def startService(self) -> None:
        makePrivateFolder(self.path.parent())
        descriptor = os.open(self.path.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(descriptor, "a", encoding="utf-8")
        self._observer = withLogContext(jsonFileLogObserver(self._file), self._defaults)
        self._publisher.addObserver(self._observer)
        super().startService()

    def stopService(self) -> None:
        super().stopService()
        if self._observer is not None:
            self._publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def reopen(self) -> None:
        """
        Open C{path} again, as after logrotate moved the file away: later
        events go to the file now at C{path}, and the old one is closed.
        Nothing happens unless running; if the file cannot be opened, the
        error is raised and events still go to the old one.
        """
        if self._file is None:
            return
        descriptor = os.open(self.path.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        old, oldObserver = self._file, self._observer
        self._file = os.fdopen(descriptor, "a", encoding="utf-8")
        self._observer = withLogContext(jsonFileLogObserver(self._file), self._defaults)
        self._publisher.addObserver(self._observer)
        self._publisher.removeObserver(oldObserver)
        old.close()


#: The name of the log-file service under a daemon's top service.
LOG_FILE_SERVICE = "log"


def withLogFile(logFile: FilePath | None,
                defaults: dict[str, str] | None = None) -> MultiService:
    """
    A service to hang a daemon's parts on, copying the log to C{logFile} if
    set (each line with C{defaults} where it has no such field).
    """
    top = MultiService()
    if logFile is not None:
        logService = JSONLogFileService(logFile, defaults=defaults)
        logService.setName(LOG_FILE_SERVICE)
        logService.setServiceParent(top)
    return top
