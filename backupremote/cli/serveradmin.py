"""``backupremote server init`` and ``server add-client``; ``server clients`` is in
L{backupremote.cli.serverclients}, ``server fingerprint`` and ``server rotate-cert``
in L{backupremote.cli.servercert}."""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli import servercert, serverclients
from backupremote.cli.output import Output
from backupremote.configfile import configError
from backupremote.server.admin.serverinit import createServerFolder, registerClient
from backupremote.server.config import DEFAULT_LISTEN, loadServerConfig


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
    serverclients.register(sub)
    servercert.register(sub)


def initServer(args: argparse.Namespace, output: Output) -> int:
    clientCAPem = None
    if args.client_ca:
        try:
            clientCAPem = FilePath(args.client_ca).getContent()
        except OSError:
            raise configError(f"cannot read the client CA file {args.client_ca}") from None
    folder = createServerFolder(
        FilePath(args.directory),
        hostnames=args.hostname,
        listen=args.listen,
        trustIssuers=[FilePath(path) for path in args.trust_issuer],
        clientCAPem=clientCAPem,
    )
    output.result(
        {"config": folder.configPath.path, "fingerprint": folder.fingerprint},
        f"wrote {folder.configPath.path}\n"
        f"server certificate SHA-256 fingerprint (give it to clients):\n  {folder.fingerprint}"
        + ("" if folder.trustsIssuers else "\nwarning: no --trust-issuer given: the server "
           "will refuse every licence until you add one to trusted_issuers"),
    )
    return 0


def addClient(args: argparse.Namespace, output: Output) -> int:
    config = loadServerConfig(FilePath(args.config))
    secretFile = FilePath(args.secret_file) if args.secret_file else None
    secret = registerClient(config, args.client_id, secretFile)
    if secretFile is not None:
        output.result({"clientId": args.client_id, "secretFile": args.secret_file},
                      f"registered {args.client_id}; its secret is in {args.secret_file} "
                      "(only a hash is kept on the server)")
    else:
        output.result({"clientId": args.client_id, "secret": secret},
                      f"registered {args.client_id}; its secret (shown only now):\n  {secret}")
    return 0
