"""
What the two ``twistd`` plugins share: the one required option (C{--config})
and how a daemon's service is made from its configuration file (files 0600,
folders 0700; a bad configuration is one line saying what to do, not a
traceback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from twisted.python import usage
from twisted.python.filepath import FilePath

from backupremote.private import usePrivateUmask
from backupremote.protocol.errors import BackupRemoteError

C = TypeVar("C")
S = TypeVar("S")


class DaemonOptions(usage.Options):
    """C{--config FILE}, required."""

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config is required")


def serviceFromConfig(program: str, path: str, load: Callable[[FilePath[str]], C],
                      make: Callable[[C], S]) -> S:
    """The service C{make} builds from the configuration C{load} reads at C{path}."""
    usePrivateUmask()  # every file 0600, every folder 0700
    try:
        return make(load(FilePath(path)))
    except BackupRemoteError as e:
        raise SystemExit(f"{program}: {e}\n{e.action}") from None
