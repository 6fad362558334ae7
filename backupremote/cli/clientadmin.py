"""``backupremote client init``."""

from __future__ import annotations

import argparse
from typing import Any

import tomli_w
from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.client.config import ServerAddress, loadClientConfig
from backupremote.configfile import configError
from backupremote.license import parseToken
from backupremote.tls.certificates import normalizeFingerprint, writePrivateFile


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
    trust.add_argument("--fingerprint", help="the server certificate's SHA-256 fingerprint")
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
    directory = FilePath(args.directory)
    configPath = directory.child("client.toml")
    if configPath.exists():
        raise configError(f"{configPath.path} exists already; choose a new folder")
    ServerAddress.parse(args.server)
    secret = _read(args.secret_file, "secret file").strip()
    if not secret:
        raise configError(f"the secret file {args.secret_file} is empty")
    token = _read(args.license, "licence file").decode("utf-8", "replace").strip()
    license, _, _ = parseToken(token)
    if license.clientId != args.client_id:
        raise configError(
            f"the licence is for client {license.clientId!r}, not {args.client_id!r}"
        )
    if bool(args.client_cert) != bool(args.client_key):
        raise configError("--client-cert and --client-key go together")
    # Check and read every input before writing anything, so that a refused
    # command leaves no half-made folder behind to block the corrected one.
    server: dict[str, str] = {"address": args.server}
    caPem = certPem = keyPem = b""
    if args.fingerprint:
        server["fingerprint"] = normalizeFingerprint(args.fingerprint)
    else:
        caPem = _read(args.ca_file, "CA file")
        server["ca_file"] = "server-ca.pem"
    if args.client_cert:
        certPem = _read(args.client_cert, "client certificate")
        keyPem = _read(args.client_key, "client key")
        server |= {"client_cert": "client.crt", "client_key": "client.key"}
    directory.makedirs(ignoreExistingDirectory=True)
    directory.chmod(0o700)
    writePrivateFile(directory.child("client.secret").path, secret + b"\n")
    directory.child("client.license").setContent(token.encode("ascii") + b"\n")
    if not args.fingerprint:
        directory.child("server-ca.pem").setContent(caPem)
    if args.client_cert:
        directory.child("client.crt").setContent(certPem)
        writePrivateFile(directory.child("client.key").path, keyPem)
    config = {
        "client": {
            "id": args.client_id,
            "secret_file": "client.secret",
            "license_file": "client.license",
            "log_file": "logs/client.jsonl",
        },
        "server": server,
    }
    configPath.setContent(tomli_w.dumps(config).encode("utf-8"))
    loadClientConfig(configPath)
    output.result({"config": configPath.path},
                  f"wrote {configPath.path}\ntry: backupremote --config {configPath.path} capabilities")
    return 0
