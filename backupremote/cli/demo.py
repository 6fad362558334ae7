"""
``backupremote demo``: the whole flow on loopback, in a throwaway folder.

Makes an issuer key and a licence, a server folder with its certificate,
registers a client, starts the server on 127.0.0.1, connects the client
(pinned fingerprint, secret, licence) and shows what the server offers;
then stops everything and removes the folder (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.cli.remote import describeCapabilities
from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import loadClientConfig
from backupremote.client.folder import createClientFolder
from backupremote.license import generateIssuerKeyPair, issueLicense, loadIssuerKey
from backupremote.server.config import loadServerConfig
from backupremote.server.folder import createServerFolder, registerClient
from backupremote.server.service import makeService

DEMO_CLIENT = "demo-client"


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="run the whole flow on loopback in a throwaway folder",
        epilog="example: backupremote demo --keep /tmp/backupremote-demo",
    )
    demo.add_argument("--keep", metavar="DIR",
                      help="build in DIR (which must not exist) and keep it afterwards")
    demo.set_defaults(onReactor=runDemo)


def _step(output: Output, text: str) -> None:
    if not output.asJSON:
        output.out.write(f"• {text}\n")
        output.out.flush()


async def runDemo(reactor: Any, args: argparse.Namespace, output: Output) -> int:
    started = time.monotonic()
    if args.keep:
        root = FilePath(args.keep)
        root.makedirs()
    else:
        root = FilePath(tempfile.mkdtemp(prefix="backupremote-demo-"))
    service = client = None
    try:
        _step(output, f"working in {root.path}")
        keyPath, pubPath = generateIssuerKeyPair(root.child("issuer"))
        folder = createServerFolder(
            root.child("server"), listen="ssl:0:interface=127.0.0.1", trustIssuers=[pubPath]
        )
        serverConfig = loadServerConfig(folder.configPath)
        secret = registerClient(serverConfig, DEMO_CLIENT)
        _, token = issueLicense(loadIssuerKey(keyPath), DEMO_CLIENT, days=1)
        _step(output, "made an issuer key, a licence, a server folder and a client")
        service = makeService(serverConfig, reactor)
        service.startService()
        port = (await service.getServiceNamed("listener").whenListening()).getHost().port
        _step(output, f"server listening on 127.0.0.1:{port} (TLS, fingerprint "
                      f"{folder.fingerprint[:23]}...)")
        clientConfig = createClientFolder(
            root.child("client"), f"127.0.0.1:{port}", DEMO_CLIENT,
            secret.encode("ascii"), token, fingerprint=folder.fingerprint,
        )
        client = BackupRemoteClient.fromConfig(reactor, loadClientConfig(clientConfig))
        session = await client.session()
        _step(output, f"client authenticated (session {session['sessionId'][:8]}...)")
        capabilities = await client.capabilities()
        elapsed = time.monotonic() - started
        output.result(
            {"capabilities": capabilities, "seconds": round(elapsed, 3),
             "folder": root.path if args.keep else None},
            describeCapabilities(capabilities) + f"\ndemo finished in {elapsed:.2f} s",
        )
        return 0
    finally:
        if client is not None:
            await client.close()
        if service is not None:
            await service.stopService()
        if not args.keep:
            shutil.rmtree(root.path, ignore_errors=True)
