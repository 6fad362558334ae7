"""
A real backupremote server on 127.0.0.1 for integration tests.

Everything is made in the test's temp folder: TLS certificate, issuer key,
licence, a registered client; the server runs on the real reactor over TLS
on a free port and is stopped by the test's cleanup.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from attrs import define
from twisted.internet import reactor
from twisted.python.filepath import FilePath

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig, ServerAddress
from backupremote.client.connection.credentials import Credentials
from backupremote.client.connection.manager import ConnectionManager
from backupremote.license import DEFAULT_FEATURES, License, generateIssuerKeyPair, loadIssuerKey, signLicense
from backupremote.server.config import ServerConfig
from backupremote.server.service import makeService
from backupremote.server.staging import StagingArea
from backupremote.server.state.secrethash import generateSecret, hashSecret
from backupremote.server.state.store import ServerStore
from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate

CLIENT_ID = "integration-client"


@define
class RunningServer:
    folder: FilePath
    config: ServerConfig
    service: Any
    port: int
    fingerprint: str
    certPem: bytes
    secret: str
    token: str
    #: where this server stages its runs: in the test's own temp folder
    staging: StagingArea

    @property
    def core(self) -> Any:
        return self.service.getServiceNamed("listener").core

    def clientConfig(self, **changes: Any) -> ClientConfig:
        secretFile = self.folder.child("client.secret")
        if not secretFile.exists():
            secretFile.setContent(self.secret.encode())
            secretFile.chmod(0o600)
        licenseFile = self.folder.child("client.license")
        licenseFile.setContent(self.token.encode())
        fields: dict[str, Any] = dict(
            clientId=CLIENT_ID, secretFile=secretFile, licenseFile=licenseFile,
            server=ServerAddress("127.0.0.1", self.port), fingerprints=(self.fingerprint,),
            connectAttempts=1, callTimeout=10,
        )
        return ClientConfig(**(fields | changes))

    def client(self, testCase: Any, secret: str | None = None, start: bool = True,
               **changes: Any) -> BackupRemoteClient:
        """
        A client of this server, its connection started (as a CLI command
        does) unless C{start} is false (a daemon under test owns it).
        """
        config = self.clientConfig(**changes)
        connection = ConnectionManager(
            reactor, config,
            Credentials(config.clientId, secret or self.secret, self.token),
        )
        client = BackupRemoteClient(connection)
        if start:
            connection.service.startService()
        testCase.addCleanup(client.close)
        return client


async def startServer(testCase: Any, **config: Any) -> RunningServer:
    """Start a fully configured server; stopped when the test ends."""
    folder = FilePath(testCase.mktemp())
    folder.makedirs()
    keyPem, certPem = generateServerCertificate(["localhost"])
    folder.child("server.key").setContent(keyPem)
    folder.child("server.key").chmod(0o600)  # the server refuses a key others can read
    folder.child("server.crt").setContent(certPem)
    keyPath, pubPath = generateIssuerKeyPair(folder.child("issuer"))
    now = datetime.now(timezone.utc)
    token = signLicense(
        License(str(uuid.uuid4()), "Integration", CLIENT_ID, DEFAULT_FEATURES,
                now - timedelta(hours=1), now + timedelta(days=1)),
        loadIssuerKey(keyPath),
    )
    serverConfig = ServerConfig(
        dataDir=folder.child("data"),
        tlsKey=folder.child("server.key"),
        tlsCert=folder.child("server.crt"),
        listen="ssl:0:interface=127.0.0.1",
        trustedIssuers=(pubPath,),
        logFile=folder.descendant(["logs", "server.jsonl"]),
        **config,
    )
    secret = generateSecret()
    store = ServerStore.inDataDir(serverConfig.dataDir)
    store.addClient(CLIENT_ID, hashSecret(secret))
    store.close()
    staging = StagingArea.forDataDir(serverConfig.dataDir, FilePath(testCase.mktemp()))
    staging.root.parent().makedirs()
    service = makeService(serverConfig, reactor, staging=staging)
    service.startService()
    testCase.addCleanup(service.stopService)
    port = await service.getServiceNamed("listener").whenListening()
    return RunningServer(
        folder, serverConfig, service, port.getHost().port,
        fingerprintOfPem(certPem), certPem, secret, token, staging,
    )
