"""
What every client-side command starts with: its C{client.toml}, and the
client store of its data folder, opened and closed around the command.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from twisted.python.filepath import FilePath

from backupremote.client.config import ClientConfig, loadClientConfig
from backupremote.configfile import configError

if TYPE_CHECKING:
    from backupremote.client.store import SQLiteClientStore
    from twisted.internet.interfaces import IReactorFromThreads


def commandConfig(args: argparse.Namespace) -> ClientConfig:
    """The client configuration the command line names (C{--config}), read strictly."""
    if not args.config:
        raise configError("this command needs --config CLIENT_DIR/client.toml")
    return loadClientConfig(FilePath(args.config))


@asynccontextmanager
async def openedStore(config: ClientConfig,
                      reactor: IReactorFromThreads) -> AsyncIterator[SQLiteClientStore]:
    """The client store of C{config}'s data folder, open for the block, closed after."""
    if config.dataDir is None:
        raise configError("the client has no data folder ([client] data_dir)")
    from backupremote.client.store import SQLiteClientStore  # not for remote commands

    store = SQLiteClientStore.inFolder(config.dataDir, reactor)
    try:
        await store.opened()
        yield store
    finally:
        await store.close()
