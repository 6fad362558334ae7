"""The server's configuration (``server.toml``), read strictly."""

from __future__ import annotations

from typing import Any

from attrs import Factory, field, frozen
from twisted.python.filepath import FilePath

from backupremote.configfile import (
    Section,
    configError,
    namingFile,
    readToml,
    refuseUnknownSections,
)
from backupremote.metrics.config import MetricsConfig, parseMetrics
from backupremote.server.machinery.toolfinder import defaultToolPath
from backupremote.server.state.ownership import ROLES

DEFAULT_LISTEN = "ssl:7443"


def defaultTransfersPerClient(maxConcurrentTransfers: int) -> int:
    """One client's share of the transfers by default: half of them, at least one."""
    return max(1, maxConcurrentTransfers // 2)


def _halfOfTransfers(config: ServerConfig) -> int:
    return defaultTransfersPerClient(config.maxConcurrentTransfers)


@frozen
class ServerConfig:
    """
    Everything the server daemon needs, with paths already resolved.

    C{listen} is a Twisted endpoint description that must start with
    C{ssl:}; the TLS options themselves come from the C{tls*} files.
    """

    dataDir: FilePath
    tlsKey: FilePath
    tlsCert: FilePath
    listen: str = DEFAULT_LISTEN
    clientCA: FilePath | None = None
    trustedIssuers: tuple[FilePath, ...] = ()
    logFile: FilePath | None = None
    keepaliveInterval: float = 30.0
    keepaliveTimeout: float = 20.0
    authTimeout: float = 30.0
    maxFailedAuthsPerConnection: int = 3
    maxViolationsPerConnection: int = 5
    #: connections not yet authenticated, at once (``[limits] max_preauth_connections``)
    maxPreAuthConnections: int = 256
    #: of those, from one peer address (``[limits] max_preauth_connections_per_peer``)
    maxPreAuthConnectionsPerPeer: int = 16
    maxFailedAuthsPerPeer: int = 10
    peerLockoutSeconds: float = 300.0
    sqliteRoots: tuple[FilePath, ...] = ()
    firebirdRoots: tuple[FilePath, ...] = ()
    toolPath: tuple[str, ...] = field(factory=defaultToolPath)
    connectionTimeout: float = 15.0
    maxConcurrentRuns: int = 2
    maxQueuedRuns: int = 16
    postScriptsDir: FilePath | None = None
    postScriptTimeout: float = 600.0
    progressInterval: float = 0.25
    #: clients that see and act on every configuration and run (``[clients.ID] role``)
    adminClients: frozenset[str] = frozenset()
    #: seconds a staged artifact is kept when not released (``[staging] artifact_ttl``)
    artifactTtl: float = 86400.0
    #: cap on staging disk use, checked before a run is admitted; 0: no cap
    stagingMaxBytes: int = 0
    #: transfers at once, server-wide (``[limits] max_concurrent_transfers``)
    maxConcurrentTransfers: int = 8
    #: transfers at once of one client, all its connections together
    #: (``[limits] max_transfers_per_client``); by default half the server-wide limit
    maxTransfersPerClient: int = field(
        default=Factory(_halfOfTransfers, takes_self=True))
    #: seconds a transfer may go without an acknowledged box before the
    #: server aborts it (``[limits] transfer_stall_timeout``)
    transferStallTimeout: float = 60.0
    #: where Prometheus scrapes the server (C{[metrics]}; off by default)
    metrics: MetricsConfig = MetricsConfig()
    #: the daemon's reactor thread's CPU time slice in microseconds
    #: (``[server] reactor_time_slice_us``; 0: the kernel's default)
    reactorTimeSliceUs: int = 100


def loadServerConfig(path: FilePath) -> ServerConfig:
    """Read C{path}; any problem raises C{CONFIG_INVALID} naming the file and the key."""
    return namingFile(path, lambda: _loadServerConfig(path))


def _loadServerConfig(path: FilePath) -> ServerConfig:
    """Read C{path}; any problem raises C{CONFIG_INVALID} naming the key."""
    data = readToml(path)
    refuseUnknownSections(data, {"server", "tls", "limits", "databases", "runs", "staging",
                                 "clients", "metrics"})
    base = path.parent()
    server = Section(data, "server", base)
    tls = Section(data, "tls", base)
    limits = Section(data, "limits", base)
    databases = Section(data, "databases", base)
    runs = Section(data, "runs", base)
    staging = Section(data, "staging", base)
    toolPath = databases.paths("tool_path")
    listen = server.string("listen", DEFAULT_LISTEN)
    if not listen.startswith("ssl:"):
        raise configError(
            "server.listen must be an ssl: endpoint (backupremote only speaks TLS)"
        )
    maxTransfers = limits.integer("max_concurrent_transfers", 8, 1)
    config = ServerConfig(
        dataDir=server.path("data_dir", required=True),
        listen=listen,
        trustedIssuers=server.paths("trusted_issuers"),
        logFile=server.path("log_file"),
        tlsKey=tls.path("key", required=True),
        tlsCert=tls.path("cert", required=True),
        clientCA=tls.path("client_ca"),
        keepaliveInterval=limits.number("keepalive_interval", 30.0, 1),
        keepaliveTimeout=limits.number("keepalive_timeout", 20.0, 1),
        authTimeout=limits.number("auth_timeout", 30.0, 1),
        maxFailedAuthsPerConnection=limits.integer("max_failed_auths_per_connection", 3, 1),
        maxViolationsPerConnection=limits.integer("max_violations_per_connection", 5, 1),
        maxPreAuthConnections=limits.integer("max_preauth_connections", 256, 1),
        maxPreAuthConnectionsPerPeer=limits.integer("max_preauth_connections_per_peer", 16, 1),
        maxFailedAuthsPerPeer=limits.integer("max_failed_auths_per_peer", 10, 1),
        peerLockoutSeconds=limits.number("peer_lockout_seconds", 300.0, 1),
        sqliteRoots=databases.paths("sqlite_roots"),
        firebirdRoots=databases.paths("firebird_roots"),
        toolPath=tuple(p.path for p in toolPath) if toolPath else defaultToolPath(),
        connectionTimeout=limits.number("connection_timeout", 15.0, 1),
        maxConcurrentRuns=runs.integer("max_concurrent_runs", 2, 1),
        maxQueuedRuns=runs.integer("max_queued_runs", 16, 0),
        postScriptsDir=runs.path("post_scripts_dir"),
        postScriptTimeout=runs.number("post_script_timeout", 600.0, 1),
        progressInterval=runs.number("progress_interval", 0.25, 0.05),
        adminClients=_adminClients(data, base),
        artifactTtl=staging.number("artifact_ttl", 86400.0, 1),
        stagingMaxBytes=staging.integer("max_bytes", 0, 0),
        maxConcurrentTransfers=maxTransfers,
        maxTransfersPerClient=limits.integer("max_transfers_per_client",
                                             defaultTransfersPerClient(maxTransfers), 1),
        transferStallTimeout=limits.number("transfer_stall_timeout", 60.0, 1),
        metrics=parseMetrics(data, base),
        reactorTimeSliceUs=_timeSlice(server),
    )
    for section in (server, tls, limits, databases, runs, staging):
        section.done()
    return config


def _timeSlice(server: Section) -> int:
    """C{[server] reactor_time_slice_us}: 0, or what Linux grants (100 to 100,000)."""
    value = server.integer("reactor_time_slice_us", 100, 0)
    if value and not 100 <= value <= 100_000:
        raise configError("server.reactor_time_slice_us must be 0 (the kernel's default) "
                          "or from 100 to 100000 (microseconds)")
    return value


def _adminClients(data: dict[str, Any], base: FilePath) -> frozenset[str]:
    """The ids whose C{[clients.ID] role} is C{"admin"}; any other key or role is refused."""
    # imported here: backupremote.server.admin.serverinit imports this module
    from backupremote.server.admin.serverinit import CLIENT_ID

    clients = data.get("clients", {})
    if not isinstance(clients, dict):
        raise configError("[clients] must hold one [clients.ID] table per client")
    admins = set()
    for clientId, table in clients.items():
        name = f"clients.{clientId}"
        if not CLIENT_ID.fullmatch(clientId):
            raise configError(f"[{name}]: {clientId!r} is not a client id (1-128 letters, "
                              "digits, '.', '_' or '-', starting with a letter or digit)")
        if not isinstance(table, dict):
            raise configError(f'{name} must be a table: [{name}] with role = "admin"')
        section = Section({name: table}, name, base)
        role = section.string("role", "client")
        if role not in ROLES:
            raise configError(f"{name}.role must be one of: {', '.join(ROLES)}")
        section.done()
        if role == "admin":
            admins.add(clientId)
    return frozenset(admins)
