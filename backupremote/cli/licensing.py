"""``backupremote license keygen``, ``license issue`` and ``license show``."""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import EXIT_AUTH, Output
from backupremote.configfile import configError
from backupremote.filewriting import writePrivateFile
from backupremote.license import (
    ALL_FEATURES,
    DEFAULT_FEATURES,
    LicenseVerifier,
    formatDate,
    generateIssuerKeyPair,
    issueLicense,
    loadIssuerKey,
    loadTrustedKey,
    parseToken,
)
from backupremote.license.token import claimsOf
from backupremote.protocol.errors import BackupRemoteError
from backupremote.server.config import loadServerConfig


def register(commands: Any) -> None:
    license = commands.add_parser(
        "license", help="issuer keys and licence tokens",
        epilog="example: backupremote license keygen ~/backupremote-issuer",
    )
    sub = license.add_subparsers(dest="action", required=True)
    keygen = sub.add_parser(
        "keygen", help="make an issuer key pair DIR/issuer.key (0600) and DIR/issuer.pub",
        epilog="example: backupremote license keygen ~/backupremote-issuer",
    )
    keygen.add_argument("directory")
    keygen.set_defaults(run=keygenCommand)
    issue = sub.add_parser(
        "issue", help="sign a licence token for one client",
        epilog="example: backupremote license issue --issuer-key issuer.key "
        "--client-id laptop --days 365 --out laptop.license",
    )
    issue.add_argument("--issuer-key", required=True)
    issue.add_argument("--client-id", required=True)
    issue.add_argument("--licensee", help="who the licence is for (default: the client id)")
    issue.add_argument("--feature", action="append", choices=ALL_FEATURES,
                       help="a feature to grant (repeatable; default: all)")
    issue.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    issue.add_argument("--out", required=True, help="the token file to create")
    issue.set_defaults(run=issueCommand)
    show = sub.add_parser(
        "show", help="print a token's contents and whether it verifies",
        epilog="example: backupremote license show laptop.license --trust issuer.pub",
    )
    show.add_argument("file")
    show.add_argument("--trust", action="append", default=[], metavar="PUBFILE",
                      help="an issuer public key to verify against (repeatable)")
    show.add_argument("--server-config", help="verify against this server.toml's trusted issuers")
    show.set_defaults(run=showCommand)


def keygenCommand(args: argparse.Namespace, output: Output) -> int:
    keyPath, pubPath = generateIssuerKeyPair(args.directory)
    output.result(
        {"issuerKey": keyPath.path, "issuerPub": pubPath.path},
        f"issuer private key: {keyPath.path} (keep it secret, mode 0600)\n"
        f"issuer public key:  {pubPath.path} (give it to servers: --trust-issuer)",
    )
    return 0


def issueCommand(args: argparse.Namespace, output: Output) -> int:
    if args.days < 1 or args.days > 36500:
        raise configError("--days must be between 1 and 36500")
    license, token = issueLicense(
        loadIssuerKey(args.issuer_key), args.client_id, days=args.days,
        features=args.feature or DEFAULT_FEATURES, licensee=args.licensee,
    )
    writePrivateFile(args.out, (token + "\n").encode("ascii"))
    output.result(
        claimsOf(license) | {"file": args.out},
        f"wrote {args.out}: licence {license.licenseId} for {license.clientId}, "
        f"valid until {formatDate(license.expiresAt)}",
    )
    return 0


def showCommand(args: argparse.Namespace, output: Output) -> int:
    try:
        token = FilePath(args.file).getContent().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise configError(f"cannot read {args.file}") from None
    license, _, _ = parseToken(token)
    keys = [loadTrustedKey(path) for path in args.trust]
    if args.server_config:
        keys += [loadTrustedKey(p) for p in loadServerConfig(FilePath(args.server_config)).trustedIssuers]
    verdict: dict[str, Any]
    if not keys:
        verdict = {"verified": None, "reason": "no issuer key given (--trust or --server-config)"}
    else:
        try:
            LicenseVerifier(keys, SimpleNamespace(seconds=time.time)).verify(token, license.clientId)
            verdict = {"verified": True, "reason": "signature and validity dates are good"}
        except BackupRemoteError as error:
            verdict = {"verified": False, "reason": f"{error.code}: {error.message}"}
    described = claimsOf(license) | verdict
    output.result(described, describeLicense(license, verdict, time.time()))
    return EXIT_AUTH if verdict["verified"] is False else 0


def describeLicense(license: Any, verdict: dict[str, Any], now: float) -> str:
    """The licence as a person reads it: dates, days left, and the verdict in words."""
    daysLeft = (license.expiresAt.timestamp() - now) / 86400
    if daysLeft < 0:
        left = f"expired {-daysLeft:.0f} days ago"
    elif license.notBefore.timestamp() > now:
        left = "not valid yet"
    else:
        left = f"{daysLeft:.0f} days left" if daysLeft >= 1 else "expires today"
    verified = verdict["verified"]
    if verified is True:
        said = "yes: " + verdict["reason"]
    elif verified is False:
        said = "NO: " + verdict["reason"]
    else:
        said = "not checked: " + verdict["reason"]
    rows = [
        ("licence", license.licenseId),
        ("licensee", license.licensee),
        ("client id", license.clientId),
        ("features", ", ".join(license.features) or "none"),
        ("valid", f"{license.notBefore:%Y-%m-%d %H:%M} to {license.expiresAt:%Y-%m-%d %H:%M} "
                  f"UTC ({left})"),
        ("verified", said),
    ]
    return "\n".join(f"{label:<10} {value}" for label, value in rows)
