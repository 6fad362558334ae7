"""The client's configuration (``client.toml``), read strictly."""

from __future__ import annotations

import re

from attrs import evolve, frozen
from twisted.python.filepath import FilePath

from backupremote.client.delivery.policy import DeliveryPolicy, parseDelivery
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


#: The server a lone C{[server]} table is, and the one code-made configs have.
DEFAULT_SERVER = "default"
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


@frozen
class ServerEntry:
    """
    One server of C{client.toml} (C{[servers.NAME]}, or the lone C{[server]}
    named C{default}): where it is, how its certificate is checked, and who
    this client is to it.
    """

    name: str
    address: ServerAddress
    clientId: str
    secretFile: FilePath
    licenseFile: FilePath
    fingerprints: tuple[str, ...] = ()
    caFile: FilePath | None = None
    serverName: str | None = None
    clientCert: FilePath | None = None
    clientKey: FilePath | None = None


@frozen
class ClientConfig:
    """
    Everything the client needs to reach and prove itself to its servers.

    The server fields at the top (C{server}, C{clientId}, C{fingerprints}...)
    are those of one server: the only one, or the one L{forServer} picked
    (C{default}, else the first by name, in a configuration just read).
    C{servers} lists them all; code that talks to a named server asks
    L{forServer} for its configuration.
    """

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
    #: the delivery queue's retries, breaker and caps (C{[delivery]})
    delivery: DeliveryPolicy = DeliveryPolicy()
    #: every server of client.toml (empty in a config made in code: then
    #: the top-level fields are the one server, C{default})
    servers: tuple[ServerEntry, ...] = ()

    @property
    def serverEntries(self) -> dict[str, ServerEntry]:
        """Every server by name (C{default} alone for a config made in code)."""
        if self.servers:
            return {entry.name: entry for entry in self.servers}
        return {DEFAULT_SERVER: ServerEntry(
            DEFAULT_SERVER, self.server, self.clientId, self.secretFile, self.licenseFile,
            self.fingerprints, self.caFile, self.serverName, self.clientCert, self.clientKey)}

    @property
    def serverNames(self) -> tuple[str, ...]:
        """The names of the servers, sorted."""
        return tuple(sorted(self.serverEntries))

    def pickServer(self, name: str | None = None) -> str:
        """
        The server C{--server NAME} means: C{name} if client.toml has it;
        without a name, the only server (C{CONFIG_INVALID} naming them all
        when there are several, or when C{name} is not one of them).
        """
        names = self.serverNames
        if name is not None:
            if name not in names:
                raise configError(f"client.toml has no server {name!r}; its servers: "
                                  f"{', '.join(names)}")
            return name
        if len(names) == 1:
            return names[0]
        raise configError(f"client.toml names {len(names)} servers ({', '.join(names)}): "
                          "choose one with --server NAME")

    def forServer(self, name: str) -> ClientConfig:
        """This configuration with the top-level server fields of server C{name}."""
        entry = self.serverEntries.get(self.pickServer(name))
        assert entry is not None
        return evolve(self, clientId=entry.clientId, secretFile=entry.secretFile,
                      licenseFile=entry.licenseFile, server=entry.address,
                      fingerprints=entry.fingerprints, caFile=entry.caFile,
                      serverName=entry.serverName, clientCert=entry.clientCert,
                      clientKey=entry.clientKey)

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
    refuseUnknownSections(data, {"client", "server", "servers", "limits", "notify",
                                 "metrics", "web", "delivery"})
    base = path.parent()
    client = Section(data, "client", base)
    limits = Section(data, "limits", base)
    web = Section(data, "web", base)
    clientId = client.string("id")
    secretFile = client.path("secret_file")
    licenseFile = client.path("license_file")
    entries = []
    if "server" in data or "servers" not in data:
        entries.append(_serverEntry(Section(data, "server", base), DEFAULT_SERVER,
                                    clientId, secretFile, licenseFile, client))
    named = data.get("servers", {})
    if not isinstance(named, dict):
        raise configError("[servers] must hold tables: [servers.NAME]")
    for name in sorted(named):
        if not _SERVER_NAME.fullmatch(name):
            raise configError(f"[servers.{name}]: a server's name is letters, digits, "
                              "'-' and '_' (up to 63)")
        if name == DEFAULT_SERVER and entries:
            raise configError("[server] is the server named default: set [server] or "
                              "[servers.default], not both")
        entries.append(_serverEntry(Section({f"servers.{name}": named[name]}, f"servers.{name}", base), name,
                                    clientId, secretFile, licenseFile, client))
    entries.sort(key=lambda entry: entry.name)
    primary = next((e for e in entries if e.name == DEFAULT_SERVER), entries[0])
    config = ClientConfig(
        clientId=primary.clientId,
        secretFile=primary.secretFile,
        licenseFile=primary.licenseFile,
        logFile=client.path("log_file"),
        dataDir=client.path("data_dir") or base,
        server=primary.address,
        fingerprints=primary.fingerprints,
        caFile=primary.caFile,
        serverName=primary.serverName,
        clientCert=primary.clientCert,
        clientKey=primary.clientKey,
        keepaliveInterval=limits.number("keepalive_interval", 30.0, 1),
        keepaliveTimeout=limits.number("keepalive_timeout", 20.0, 1),
        connectAttempts=limits.integer("connect_attempts", 3, 1),
        callTimeout=limits.number("call_timeout", 60.0, 1),
        notify=parseNotify(data.get("notify"), base),
        metrics=parseMetrics(data, base),
        servers=tuple(entries),
        webListen=_endpoint(web.string("listen"), "web.listen"),
        delivery=parseDelivery(data, base),
    )
    for section in (client, limits, web):
        section.done()
    return config


def _serverEntry(server: Section, name: str, clientId: str | None,
                 secretFile: FilePath | None, licenseFile: FilePath | None,
                 client: Section) -> ServerEntry:
    """One server's table: C{[server]}, or C{[servers.NAME]} (which may name its own client)."""
    where = server._name
    if where != "server":
        clientId = server.string("client_id") or clientId
        secretFile = server.path("secret_file") or secretFile
        licenseFile = server.path("license_file") or licenseFile
    for value, key, own in ((clientId, "id", "client_id"), (secretFile, "secret_file", None),
                            (licenseFile, "license_file", None)):
        if value is None:
            if where == "server":
                raise client.missing(key)
            raise configError(f"{where}.{own or key} is required (or client.{key} for "
                              "every server)")
    address = server.string("address") or _raise(server.missing("address"))
    entry = ServerEntry(
        name=name,
        address=ServerAddress.parse(address),
        clientId=clientId,  # type: ignore[arg-type]
        secretFile=secretFile,  # type: ignore[arg-type]
        licenseFile=licenseFile,  # type: ignore[arg-type]
        fingerprints=_pins(server),
        caFile=server.path("ca_file"),
        serverName=server.string("server_name"),
        clientCert=server.path("client_cert"),
        clientKey=server.path("client_key"),
    )
    server.done()
    if bool(entry.fingerprints) == bool(entry.caFile):
        raise configError(f"set exactly one of {where}.fingerprints and {where}.ca_file")
    if bool(entry.clientCert) != bool(entry.clientKey):
        raise configError(f"{where}.client_cert and {where}.client_key go together")
    return entry


def _pins(server: Section) -> tuple[str, ...]:
    """C{fingerprints = [...]}, or the older C{fingerprint = "..."} as a list of one."""
    many = server.strings("fingerprints")
    one = server.string("fingerprint")
    if many is not None and one is not None:
        raise configError(f"set {server._name}.fingerprints or {server._name}.fingerprint, "
                          "not both")
    if many is not None and not many:
        raise configError(f"{server._name}.fingerprints must list at least one fingerprint")
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
