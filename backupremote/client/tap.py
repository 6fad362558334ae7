"""``twistd backupremote-client``: options and service construction."""

from __future__ import annotations

from twisted.application.service import IService

from backupremote.client.config import loadClientConfig
from backupremote.client.service import makeService as makeClientService
from backupremote.daemon import DaemonOptions, serviceFromConfig


class Options(DaemonOptions):
    synopsis = "--config DIR/client.toml"
    longdesc = "Run the backupremote client daemon: schedules, runs, deliveries."
    optParameters = [["config", "c", None, "Path of client.toml (required)."]]


def makeService(options: Options) -> IService:
    return serviceFromConfig("backupremote-client", options["config"], loadClientConfig,
                             makeClientService)
