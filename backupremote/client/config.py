"""The client's configuration (``client.toml``), read strictly."""

from __future__ import annotations

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.client.notify.config import NotifyConfig, parseNotify
from backupremote.metrics.config import MetricsConfig, parseMetrics
from backupremote.configfile import (
    Section,
    configError,
    namingFile,
    readToml,
    refuseUnknownSections,
)
from backupremote.private import refuseShared
from backupremote.tls.client import pinList


@frozen
class ServerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ServerAddress:
        """C{HOST:PORT}, with IPv6 literals in brackets: C{[::1]:7443}."""
        host, sep, port = text.rpartition(":")
        bracketed = host.startswith("[") and host.endswith("]")
        if bracketed:
            host = host[1:-1]
        if (not sep or not host or (":" in host) != bracketed
                or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536):
            raise configError(f"server.address {text!r} is not HOST:PORT")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@frozen
class ClientConfig:
    """Everything the client needs to reach and prove itself to its server."""

    clientId: str
    secretFile: FilePath
    licenseFile: FilePath
    server: ServerAddress
    #: pinned SHA-256 fingerprints of the server's certificate, any of which
    #: is accepted (two during a certificate rotation)
    fingerprints: tuple[str, ...] = ()
    caFile: FilePath | None = None
    serverName: str | None = None
    clientCert: FilePath | None = None
    clientKey: FilePath | None = None
    logFile: FilePath | None = None
    #: the client's own files: its store (client.sqlite3), downloads in
    #: progress, job locks; C{None} (a config made in code): no store
    dataDir: FilePath | None = None
    keepaliveInterval: float = 30.0
    keepaliveTimeout: float = 20.0
    connectAttempts: int = 3
    callTimeout: float = 60.0
    #: who is told what, by email and webhook (C{[notify]})
    notify: NotifyConfig = NotifyConfig()
    #: where Prometheus scrapes the daemon (C{[metrics]}; off by default)
    metrics: MetricsConfig = MetricsConfig()
    #: the dashboard's endpoint string (C{[web] listen}); C{None}: no dashboard
    webListen: str | None = None

    def readSecret(self) -> str:
        """The client secret; refused if anyone but the owner may read it."""
        return _readPrivate(self.secretFile, "secret file")

    def readClientKey(self) -> bytes | None:
        """The client's TLS key (mutual TLS), if any; refused if others may read it."""
        if self.clientKey is None:
            return None
        refuseShared(self.clientKey, "client TLS key")
        try:
            return self.clientKey.getContent()
        except OSError as e:
            raise configError(
                f"cannot read the client TLS key {self.clientKey.path}: {e.strerror}"
            ) from None

    def readLicense(self) -> str:
        try:
            return self.licenseFile.getContent().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise configError(
                f"cannot read the licence file {self.licenseFile.path}"
            ) from None


def _readPrivate(path: FilePath, what: str) -> str:
    try:
        refuseShared(path, what)
        value = path.getContent().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise configError(f"cannot read the {what} {path.path}") from None
    if not value:
        raise configError(f"the {what} {path.path} is empty")
    return value


def loadClientConfig(path: FilePath) -> ClientConfig:
    """Read C{path}; any problem raises C{CONFIG_INVALID} naming the file and the key."""
    return namingFile(path, lambda: _loadClientConfig(path))


def _loadClientConfig(path: FilePath) -> ClientConfig:
    """Read C{path}; any problem raises C{CONFIG_INVALID} naming the key."""
    data = readToml(path)
    refuseUnknownSections(data, {"client", "server", "limits", "notify", "metrics",
                                 "web"})
    base = path.parent()
    client = Section(data, "client", base)
    server = Section(data, "server", base)
    limits = Section(data, "limits", base)
    web = Section(data, "web", base)
    fingerprints = _pins(server)
    config = ClientConfig(
        clientId=client.string("id") or _raise(client.missing("id")),
        secretFile=client.path("secret_file", required=True),
        licenseFile=client.path("license_file", required=True),
        logFile=client.path("log_file"),
        dataDir=client.path("data_dir") or base,
        server=ServerAddress.parse(server.string("address") or _raise(server.missing("address"))),
        fingerprints=fingerprints,
        caFile=server.path("ca_file"),
        serverName=server.string("server_name"),
        clientCert=server.path("client_cert"),
        clientKey=server.path("client_key"),
        keepaliveInterval=limits.number("keepalive_interval", 30.0, 1),
        keepaliveTimeout=limits.number("keepalive_timeout", 20.0, 1),
        connectAttempts=limits.integer("connect_attempts", 3, 1),
        callTimeout=limits.number("call_timeout", 60.0, 1),
        notify=parseNotify(data.get("notify"), base),
        metrics=parseMetrics(data, base),
        webListen=_endpoint(web.string("listen"), "web.listen"),
    )
    for section in (client, server, limits, web):
        section.done()
    if bool(config.fingerprints) == bool(config.caFile):
        raise configError("set exactly one of server.fingerprints and server.ca_file")
    if bool(config.clientCert) != bool(config.clientKey):
        raise configError("server.client_cert and server.client_key go together")
    return config


def _pins(server: Section) -> tuple[str, ...]:
    """C{fingerprints = [...]}, or the older C{fingerprint = "..."} as a list of one."""
    many = server.strings("fingerprints")
    one = server.string("fingerprint")
    if many is not None and one is not None:
        raise configError("set server.fingerprints or server.fingerprint, not both")
    if many is not None and not many:
        raise configError("server.fingerprints must list at least one fingerprint")
    given = many if many is not None else (one,) if one is not None else ()
    return pinList(given) if given else ()


def _endpoint(text: str | None, key: str) -> str | None:
    """A server endpoint string, checked now rather than at the daemon's start."""
    if text is None:
        return None
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(None, text)  # parsed (and its TLS files read), not listened on
    except (ValueError, TypeError, KeyError) as error:
        raise configError(f"{key} {text!r} is not an endpoint string like "
                          f"'tcp:8470:interface=127.0.0.1': {error}") from None
    return text


def _raise(error: Exception) -> str:
    raise error
