"""
Making a server folder and registering clients: what ``server init`` and
``server add-client`` do, as functions the CLI and the demo share.
"""

from __future__ import annotations

import re
from typing import Sequence

import tomli_w
from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.configfile import configError
from backupremote.filewriting import writeNewFile, writePrivateFile
from backupremote.license import loadTrustedKey
from backupremote.private import makePrivateFolder
from backupremote.server.config import DEFAULT_LISTEN, ServerConfig, loadServerConfig
from backupremote.server.state.secrethash import generateSecret, hashSecret
from backupremote.server.state.store import ClientExists, ServerStore
from backupremote.tls.certificates import (
    fingerprintOfPem,
    generateServerCertificate,
    loadCertificates,
)

CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@frozen
class ServerFolder:
    """A server folder just made: its config and the certificate's fingerprint."""

    configPath: FilePath
    fingerprint: str
    trustsIssuers: bool


def _readIssuer(path: FilePath) -> bytes:
    loadTrustedKey(path)
    return path.getContent()


def createServerFolder(
    directory: FilePath,
    hostnames: Sequence[str] = (),
    listen: str = DEFAULT_LISTEN,
    trustIssuers: Sequence[FilePath] = (),
    clientCAPem: bytes | None = None,
    sqliteRoots: Sequence[FilePath] = (),
) -> ServerFolder:
    """
    Write C{directory}/server.toml, a TLS key and self-signed certificate,
    copies of the trusted issuer keys and the data folder: every file 0600,
    every folder it makes 0700.

    Every input is checked before anything is written, so a refusal leaves
    nothing behind.
    """
    configPath = directory.child("server.toml")
    if configPath.exists():
        raise configError(f"{configPath.path} exists already; choose a new folder")
    if not listen.startswith("ssl:"):
        raise configError("--listen must be an ssl: endpoint")
    issuers = [_readIssuer(path) for path in trustIssuers]
    if clientCAPem is not None:
        loadCertificates(clientCAPem, "client CA file")
    makePrivateFolder(directory)
    for sub in ("tls", "trusted-issuers", "data"):
        makePrivateFolder(directory.child(sub))
        directory.child(sub).chmod(0o700)
    keyPem, certPem = generateServerCertificate(list(hostnames) or ["localhost"])
    writePrivateFile(directory.descendant(["tls", "server.key"]).path, keyPem)
    writeNewFile(directory.descendant(["tls", "server.crt"]), certPem)
    trusted = []
    for index, pem in enumerate(issuers, 1):
        name = f"issuer-{index}.pub"
        writeNewFile(directory.descendant(["trusted-issuers", name]), pem)
        trusted.append(f"trusted-issuers/{name}")
    tls = {"key": "tls/server.key", "cert": "tls/server.crt"}
    if clientCAPem is not None:
        writeNewFile(directory.descendant(["tls", "client-ca.pem"]), clientCAPem)
        tls["client_ca"] = "tls/client-ca.pem"
    config = {
        "server": {
            "listen": listen,
            "data_dir": "data",
            "log_file": "logs/server.jsonl",
            "trusted_issuers": trusted,
        },
        "tls": tls,
    }
    if sqliteRoots:
        config["databases"] = {"sqlite_roots": [root.path for root in sqliteRoots]}
    writeNewFile(configPath, tomli_w.dumps(config).encode("utf-8"))
    loadServerConfig(configPath)
    ServerStore.inDataDir(directory.child("data")).close()
    return ServerFolder(configPath, fingerprintOfPem(certPem), bool(trusted))


def registerClient(
    config: ServerConfig, clientId: str, secretFile: FilePath | None = None
) -> str:
    """
    Register C{clientId} with a new secret and return the secret; only its
    hash is stored. With C{secretFile}, the secret is also written there (0600).
    """
    if not CLIENT_ID.fullmatch(clientId):
        raise configError("a client id is 1-128 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    secret = generateSecret()
    if secretFile is not None:
        writePrivateFile(secretFile.path, (secret + "\n").encode("ascii"))
    store = ServerStore.inDataDir(config.dataDir)
    try:
        store.addClient(clientId, hashSecret(secret))
    except ClientExists:
        if secretFile is not None:
            secretFile.remove()
        raise configError(f"client {clientId!r} is already registered") from None
    finally:
        store.close()
    return secret
