"""``backupremote server fingerprint`` and ``server rotate-cert``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.configfile import configError
from backupremote.server.admin.certrotation import (
    CertificateInfo,
    activatePending,
    certificateState,
    discardPending,
    stageCertificate,
    stageNewCertificate,
)
from backupremote.server.config import loadServerConfig

_CONFIG = "/etc/backupremote/server.toml"

#: How to make a running server offer the certificate files as they are now.
RELOAD = ("send the server SIGHUP (`systemctl reload backupremote-server`, or "
          "`kill -HUP PID`) or restart it")


def register(serverCommands: Any) -> None:
    """Add C{fingerprint} and C{rotate-cert} to the C{server} command's subcommands."""
    fingerprint = serverCommands.add_parser(
        "fingerprint", help="print the SHA-256 fingerprint of the server's certificate "
        "(and of a pending one)",
        epilog=f"example: backupremote server fingerprint --config {_CONFIG}",
    )
    fingerprint.add_argument("--config", required=True, help="the server.toml")
    fingerprint.set_defaults(run=showFingerprint)

    rotate = serverCommands.add_parser(
        "rotate-cert", help="make a new key and certificate as a pending pair, then "
        "activate it once clients pin both fingerprints",
        description="Without options: a new key and self-signed certificate, with the "
        "names of the current one, as a pending pair the server does not offer. Pin "
        "both fingerprints on every client (fingerprints = [OLD, NEW]), then "
        "--activate it and " + RELOAD + ".",
        epilog=f"example: backupremote server rotate-cert --config {_CONFIG}, then "
        f"backupremote server rotate-cert --config {_CONFIG} --activate",
    )
    rotate.add_argument("--config", required=True, help="the server.toml")
    what = rotate.add_mutually_exclusive_group()
    what.add_argument("--activate", action="store_true",
                      help="make the pending pair current (the current one is kept as "
                      "*.previous)")
    what.add_argument("--discard", action="store_true", help="remove the pending pair")
    what.add_argument("--key", metavar="KEYFILE",
                      help="stage this key (with --cert, e.g. from your CA) instead of "
                      "making one")
    rotate.add_argument("--cert", metavar="CERTFILE", help="the certificate of --key")
    rotate.add_argument("--hostname", action="append", default=[],
                        help="a name for the new certificate (repeatable; default: the "
                        "names of the current one)")
    rotate.add_argument("--days", type=int, default=825,
                        help="validity of the new certificate (default 825)")
    rotate.set_defaults(run=rotateCertificate)


def _describe(label: str, info: CertificateInfo) -> str:
    return (f"{label}: {info.fingerprint}\n"
            f"  names {', '.join(info.names)}; valid until {info.notAfter}")


def _pinLine(fingerprints: list[str]) -> str:
    return f"fingerprints = {json.dumps(fingerprints)}"


def showFingerprint(args: argparse.Namespace, output: Output) -> int:
    state = certificateState(loadServerConfig(FilePath(args.config)))
    lines = [_describe("current certificate", state.current)]
    if state.pending is not None:
        lines += [
            _describe("pending certificate (not offered until activated)", state.pending),
            "during the rotation, clients pin both, in client.toml [server]:",
            f"  {_pinLine(state.fingerprints)}",
        ]
    output.result({"fingerprint": state.current.fingerprint,
                   "fingerprints": state.fingerprints,
                   "current": state.current, "pending": state.pending},
                  "\n".join(lines))
    return 0


def rotateCertificate(args: argparse.Namespace, output: Output) -> int:
    config = loadServerConfig(FilePath(args.config))
    if args.cert and not args.key:
        raise configError("--cert goes with --key")
    if (args.activate or args.discard or args.key) and (args.hostname or args.days != 825):
        raise configError("--hostname and --days are for making a new certificate")
    if args.activate:
        current, previous = activatePending(config)
        output.result(
            {"current": current, "previous": previous},
            f"{_describe('current certificate', current)}\n"
            f"the previous one is kept as {config.tlsCert.basename()}.previous "
            f"({previous.fingerprint})\n"
            f"a running server offers the new certificate once you {RELOAD}; "
            "clients that pin only the previous fingerprint are refused from then on",
        )
        return 0
    if args.discard:
        discarded = discardPending(config)
        output.result({"discarded": discarded},
                      f"discarded the pending certificate {discarded.fingerprint}")
        return 0
    if args.key:
        if not args.cert:
            raise configError("--key needs --cert")
        pending = stageCertificate(config, _read(args.key, "key"), _read(args.cert,
                                                                         "certificate"))
    else:
        pending = stageNewCertificate(config, args.hostname, args.days)
    state = certificateState(config)
    output.result(
        {"pending": pending, "current": state.current, "fingerprints": state.fingerprints},
        f"{_describe('pending certificate (the server does not offer it yet)', pending)}\n"
        "next: pin both fingerprints on every client, in client.toml [server]:\n"
        f"  {_pinLine(state.fingerprints)}\n"
        "then: backupremote server rotate-cert --config "
        f"{args.config} --activate, and {RELOAD}",
    )
    return 0


def _read(path: str, what: str) -> bytes:
    try:
        return FilePath(path).getContent()
    except OSError:
        raise configError(f"cannot read the {what} file {path}") from None
