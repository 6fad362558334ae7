"""``twistd backupremote-client``: options and service construction."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage
from twisted.python.filepath import FilePath

from backupremote.client.config import loadClientConfig
from backupremote.client.service import makeService as makeClientService
from backupremote.private import usePrivateUmask
from backupremote.protocol.errors import BackupRemoteError


class Options(usage.Options):
    synopsis = "--config DIR/client.toml"
    longdesc = "Run the backupremote client daemon: schedules, runs, deliveries."
    optParameters = [["config", "c", None, "Path of client.toml (required)."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config is required")


def makeService(options: Options) -> IService:
    usePrivateUmask()  # every file 0600, every folder 0700
    try:
        return makeClientService(loadClientConfig(FilePath(options["config"])))
    except BackupRemoteError as e:
        raise SystemExit(f"backupremote-client: {e}\n{e.action}") from None
