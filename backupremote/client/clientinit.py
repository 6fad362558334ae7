"""Making a client folder: what ``client init`` does, shared with the demo."""

from __future__ import annotations

from typing import Sequence

import tomli_w
from twisted.python.filepath import FilePath

from backupremote.client.config import ServerAddress, loadClientConfig
from backupremote.configfile import configError
from backupremote.filewriting import writeNewFile, writePrivateFile
from backupremote.license import parseToken
from backupremote.private import makePrivateFolder
from backupremote.tls.certificates import loadCertificates, loadPrivateKey
from backupremote.tls.client import pinList


def createClientFolder(
    directory: FilePath,
    server: str,
    clientId: str,
    secret: bytes,
    licenseToken: str,
    fingerprints: Sequence[str] = (),
    caPem: bytes | None = None,
    clientCertPem: bytes | None = None,
    clientKeyPem: bytes | None = None,
) -> FilePath:
    """
    Write C{directory}/client.toml with the secret and licence beside it,
    every file 0600 in a folder 0700; return the config's path.

    Every input is checked before anything is written, so a refused call
    leaves no half-made folder to block the corrected one.
    """
    configPath = directory.child("client.toml")
    if configPath.exists():
        raise configError(f"{configPath.path} exists already; choose a new folder")
    ServerAddress.parse(server)
    secret = secret.strip()
    if not secret:
        raise configError("the secret is empty")
    license, _, _ = parseToken(licenseToken)
    if license.clientId != clientId:
        raise configError(f"the licence is for client {license.clientId!r}, not {clientId!r}")
    if bool(fingerprints) == bool(caPem):
        raise configError("give exactly one of a fingerprint and a CA file")
    pins = pinList(fingerprints) if fingerprints else ()
    if (clientCertPem is None) != (clientKeyPem is None):
        raise configError("--client-cert and --client-key go together")
    if caPem is not None:
        loadCertificates(caPem, "CA file")
    if clientCertPem is not None and clientKeyPem is not None:
        loadCertificates(clientCertPem, "client certificate")
        loadPrivateKey(clientKeyPem, "client key")
    serverTable: dict[str, str | list[str]] = {"address": server}
    if pins:
        serverTable["fingerprints"] = list(pins)
    else:
        serverTable["ca_file"] = "server-ca.pem"
    if clientCertPem is not None:
        serverTable |= {"client_cert": "client.crt", "client_key": "client.key"}
    makePrivateFolder(directory)
    directory.chmod(0o700)
    writePrivateFile(directory.child("client.secret").path, secret + b"\n")
    writeNewFile(directory.child("client.license"), licenseToken.strip().encode("ascii") + b"\n")
    if caPem is not None:
        writeNewFile(directory.child("server-ca.pem"), caPem)
    if clientCertPem is not None and clientKeyPem is not None:
        writeNewFile(directory.child("client.crt"), clientCertPem)
        writePrivateFile(directory.child("client.key").path, clientKeyPem)
    config = {
        "client": {
            "id": clientId,
            "secret_file": "client.secret",
            "license_file": "client.license",
            "log_file": "logs/client.jsonl",
        },
        "server": serverTable,
    }
    writeNewFile(configPath, tomli_w.dumps(config).encode("utf-8"))
    loadClientConfig(configPath)
    return configPath
