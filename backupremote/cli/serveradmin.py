"""``backupremote server init`` and ``server add-client``."""

from __future__ import annotations

import argparse
import re
import shutil
from typing import Any

import tomli_w
from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.configfile import configError
from backupremote.license import loadTrustedKey
from backupremote.server.config import DEFAULT_LISTEN, loadServerConfig
from backupremote.server.secrethash import generateSecret, hashSecret
from backupremote.server.store import ClientExists, ServerStore
from backupremote.tls.certificates import (
    fingerprintOfPem,
    generateServerCertificate,
    loadCertificates,
    writePrivateFile,
)

CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def register(commands: Any) -> None:
    server = commands.add_parser(
        "server", help="set up and administer a server",
        epilog="example: backupremote server init /etc/backupremote --hostname db1.example.net",
    )
    sub = server.add_subparsers(dest="action", required=True)
    init = sub.add_parser(
        "init", help="create a server folder: config, TLS key and certificate, data",
        epilog="example: backupremote server init /etc/backupremote "
        "--hostname db1.example.net --listen ssl:7443:interface=127.0.0.1 "
        "--trust-issuer issuer.pub",
    )
    init.add_argument("directory")
    init.add_argument("--hostname", action="append", default=[],
                      help="a name or address clients use for this server (repeatable)")
    init.add_argument("--listen", default=DEFAULT_LISTEN,
                      help=f"endpoint to listen on, must start with ssl: (default {DEFAULT_LISTEN})")
    init.add_argument("--trust-issuer", action="append", default=[], metavar="PUBFILE",
                      help="an issuer public key whose licences the server accepts (repeatable)")
    init.add_argument("--client-ca", metavar="PEMFILE",
                      help="require client certificates signed by this CA (mutual TLS)")
    init.set_defaults(run=initServer)
    add = sub.add_parser(
        "add-client", help="register a client and print its secret once",
        epilog="example: backupremote server add-client --config /etc/backupremote/server.toml "
        "laptop --secret-file laptop.secret",
    )
    add.add_argument("--config", required=True, help="the server.toml")
    add.add_argument("client_id")
    add.add_argument("--secret-file", help="write the secret to this new file (0600) "
                     "instead of printing it")
    add.set_defaults(run=addClient)


def initServer(args: argparse.Namespace, output: Output) -> int:
    directory = FilePath(args.directory)
    if directory.child("server.toml").exists():
        raise configError(f"{directory.child('server.toml').path} exists already; "
                          "choose a new folder")
    if not args.listen.startswith("ssl:"):
        raise configError("--listen must be an ssl: endpoint")
    for issuer in args.trust_issuer:
        loadTrustedKey(issuer)
    clientCAPem = None
    if args.client_ca:
        try:
            clientCAPem = FilePath(args.client_ca).getContent()
        except OSError:
            raise configError(f"cannot read the client CA file {args.client_ca}") from None
        loadCertificates(clientCAPem, f"client CA file {args.client_ca}")
    directory.makedirs(ignoreExistingDirectory=True)
    for sub in ("tls", "trusted-issuers", "data"):
        directory.child(sub).makedirs(ignoreExistingDirectory=True)
    directory.child("data").chmod(0o700)
    keyPem, certPem = generateServerCertificate(args.hostname or ["localhost"])
    writePrivateFile(directory.descendant(["tls", "server.key"]).path, keyPem)
    directory.descendant(["tls", "server.crt"]).setContent(certPem)
    trusted = []
    for index, issuer in enumerate(args.trust_issuer, 1):
        name = f"issuer-{index}.pub"
        shutil.copyfile(issuer, directory.descendant(["trusted-issuers", name]).path)
        trusted.append(f"trusted-issuers/{name}")
    tls: dict[str, str] = {"key": "tls/server.key", "cert": "tls/server.crt"}
    if args.client_ca:
        directory.descendant(["tls", "client-ca.pem"]).setContent(clientCAPem)
        tls["client_ca"] = "tls/client-ca.pem"
    config = {
        "server": {
            "listen": args.listen,
            "data_dir": "data",
            "log_file": "logs/server.jsonl",
            "trusted_issuers": trusted,
        },
        "tls": tls,
    }
    configPath = directory.child("server.toml")
    configPath.setContent(tomli_w.dumps(config).encode("utf-8"))
    loadServerConfig(configPath)
    ServerStore.inDataDir(directory.child("data")).close()
    fingerprint = fingerprintOfPem(certPem)
    output.result(
        {"config": configPath.path, "fingerprint": fingerprint},
        f"wrote {configPath.path}\n"
        f"server certificate SHA-256 fingerprint (give it to clients):\n  {fingerprint}"
        + ("" if trusted else "\nwarning: no --trust-issuer given: the server will "
           "refuse every licence until you add one to trusted_issuers"),
    )
    return 0


def addClient(args: argparse.Namespace, output: Output) -> int:
    if not CLIENT_ID.fullmatch(args.client_id):
        raise configError("a client id is 1-128 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    config = loadServerConfig(FilePath(args.config))
    secret = generateSecret()
    if args.secret_file:
        writePrivateFile(args.secret_file, (secret + "\n").encode("ascii"))
    store = ServerStore.inDataDir(config.dataDir)
    try:
        store.addClient(args.client_id, hashSecret(secret))
    except ClientExists:
        if args.secret_file:
            FilePath(args.secret_file).remove()
        raise configError(f"client {args.client_id!r} is already registered") from None
    finally:
        store.close()
    if args.secret_file:
        output.result({"clientId": args.client_id, "secretFile": args.secret_file},
                      f"registered {args.client_id}; its secret is in {args.secret_file} "
                      "(only a hash is kept on the server)")
    else:
        output.result({"clientId": args.client_id, "secret": secret},
                      f"registered {args.client_id}; its secret (shown only now):\n  {secret}")
    return 0
