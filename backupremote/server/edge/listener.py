"""Listening for clients: the configured endpoint, always wrapped in TLS."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTCP, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory

from backupremote.configfile import configError
from backupremote.private import refuseShared
from backupremote.server.config import ServerConfig
from backupremote.tls.server import SwappableServerOptions, serverContextFactory


def _read(path: Any, what: str) -> bytes:
    try:
        return path.getContent()
    except OSError as e:
        raise configError(f"cannot read the {what} {path.path}: {e.strerror}") from None


def tlsOptions(config: ServerConfig) -> Any:
    """
    The server's TLS options from its key, certificate and optional client
    CA; C{CONFIG_INVALID} if group or others can read the key.
    """
    refuseShared(config.tlsKey, "TLS key")
    return serverContextFactory(
        _read(config.tlsKey, "TLS key"),
        _read(config.tlsCert, "TLS certificate"),
        _read(config.clientCA, "client CA file") if config.clientCA else None,
    )


class TLSEndpoint:
    """
    A TCP endpoint from C{ssl:...} whose every connection is TLS, with a
    key and certificate that L{reloadCertificate} can change while listening.
    """

    def __init__(self, reactor: IReactorTCP, config: ServerConfig) -> None:
        description = "tcp:" + config.listen[len("ssl:"):]
        try:
            self._tcp: IStreamServerEndpoint = serverFromString(reactor, description)
        except (ValueError, TypeError) as e:
            raise configError(f"server.listen is not a valid endpoint: {e}") from None
        self._config = config
        self._options = SwappableServerOptions(tlsOptions(config))

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the certificate new connections get."""
        return self._options.fingerprint

    def reloadCertificate(self) -> str:
        """
        Read the key, certificate and client CA files again; new connections
        get them, open ones keep theirs. Returns the new fingerprint.

        @raise BackupRemoteError: C{CONFIG_INVALID} if the files are not a
            usable pair; the previous ones stay in use.
        """
        self._options.options = tlsOptions(self._config)
        return self._options.fingerprint

    def listen(self, factory: Factory) -> Any:
        return self._tcp.listen(TLSMemoryBIOFactory(self._options, False, factory))
