"""``backupremote client init``."""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.client.clientinit import createClientFolder
from backupremote.configfile import configError


def register(commands: Any) -> None:
    client = commands.add_parser(
        "client", help="set up a client",
        epilog="example: backupremote client init ~/.backupremote --server db1:7443 ...",
    )
    sub = client.add_subparsers(dest="action", required=True)
    init = sub.add_parser(
        "init", help="write DIR/client.toml with the secret kept 0600",
        epilog="example: backupremote client init ~/.backupremote --server db1:7443 "
        "--fingerprint AB:CD:... --client-id laptop --secret-file laptop.secret "
        "--license laptop.license",
    )
    init.add_argument("directory")
    init.add_argument("--server", required=True, help="HOST:PORT of the server")
    trust = init.add_mutually_exclusive_group(required=True)
    trust.add_argument("--fingerprint", action="append",
                       help="the server certificate's SHA-256 fingerprint; repeat it to "
                       "pin the current and the pending certificate during a rotation "
                       "(any pinned one is accepted)")
    trust.add_argument("--ca-file", help="a CA file to verify the server's certificate by name")
    init.add_argument("--client-id", required=True)
    init.add_argument("--secret-file", required=True, help="the file add-client wrote")
    init.add_argument("--license", required=True, help="the licence token file")
    init.add_argument("--client-cert", help="client certificate for mutual TLS")
    init.add_argument("--client-key", help="client key for mutual TLS")
    init.set_defaults(run=initClient)


def _read(path: str, what: str) -> bytes:
    try:
        return FilePath(path).getContent()
    except OSError:
        raise configError(f"cannot read the {what} {path}") from None


def initClient(args: argparse.Namespace, output: Output) -> int:
    configPath = createClientFolder(
        FilePath(args.directory),
        server=args.server,
        clientId=args.client_id,
        secret=_read(args.secret_file, "secret file"),
        licenseToken=_read(args.license, "licence file").decode("utf-8", "replace"),
        fingerprints=args.fingerprint or (),
        caPem=_read(args.ca_file, "CA file") if args.ca_file else None,
        clientCertPem=_read(args.client_cert, "client certificate") if args.client_cert else None,
        clientKeyPem=_read(args.client_key, "client key") if args.client_key else None,
    )
    output.result({"config": configPath.path},
                  f"wrote {configPath.path}\ntry: backupremote --config {configPath.path} capabilities")
    return 0
