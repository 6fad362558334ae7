"""C{[metrics]} of server.toml and client.toml: where /metrics listens, and who may read it."""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.configfile import Section, configError
from backupremote.private import refuseShared

#: What docs suggest for C{listen}: loopback only.
SUGGESTED_LISTEN = "tcp:9464:interface=127.0.0.1"
_KINDS = ("tcp:", "tcp6:", "ssl:", "unix:")


@frozen
class MetricsConfig:
    """
    C{listen}: a Twisted server endpoint string (C{tcp:9464:interface=127.0.0.1},
    or C{ssl:...:privateKey=K:certKey=C} for TLS); C{None}: no metrics
    endpoint (the default). With C{username} and C{password_file}, scrapes
    need HTTP basic auth.
    """

    listen: str | None = None
    username: str | None = None
    passwordFile: FilePath | None = None

    @property
    def enabled(self) -> bool:
        return self.listen is not None

    def readPassword(self) -> str | None:
        """The basic-auth password, refused if others may read its file."""
        if self.passwordFile is None:
            return None
        try:
            refuseShared(self.passwordFile, "metrics password file")
            value = self.passwordFile.getContent().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise configError(
                f"cannot read the metrics password file {self.passwordFile.path}") from None
        if not value:
            raise configError(f"the metrics password file {self.passwordFile.path} is empty")
        return value


def parseMetrics(data: dict[str, Any], base: FilePath) -> MetricsConfig:
    """The C{[metrics]} table of a parsed config file (absent: metrics off)."""
    section = Section(data, "metrics", base)
    listen = section.string("listen")
    username = section.string("username")
    passwordFile = section.path("password_file")
    section.done()
    if listen is not None and not listen.startswith(_KINDS):
        raise configError(
            f"metrics.listen {listen!r} is not a server endpoint such as "
            f"{SUGGESTED_LISTEN!r} (tcp:, tcp6:, ssl: or unix:)")
    if (username is None) != (passwordFile is None):
        raise configError("metrics.username and metrics.password_file go together")
    return MetricsConfig(listen, username, passwordFile)
