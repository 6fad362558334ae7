"""
``backupremote dest ...``: the client's named destinations, kept in its store.

Secrets come from stdin (``--password-stdin``, sealed in the store with the
client's ``secrets.key``) or stay in a 0600 file (``--password-file``),
never from the command line. ``test`` and ``prune`` connect to the
destination; the others work on the store alone, daemon running or not.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from attrs import evolve
from twisted.python.filepath import FilePath

from backupremote.cli.clientconfig import commandConfig, openedStore
from backupremote.cli.output import Output
from backupremote.client.config import ClientConfig
from backupremote.client.delivery.model import QueueItem
from backupremote.client.delivery.retention import Copy, prune
from backupremote.client.delivery.store import DeliveryStore
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.destinations.stored import (
    KEEP,
    Retention,
    StoredDestination,
    destinationConverter,
    parseGFS,
)
from backupremote.client.destinations.urls import TYPES
from backupremote.configfile import configError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime
    from backupremote.reactors import IDestinationReactor

UTC = timezone.utc
NAME_HELP = "the destination's name, or its id"


def register(commands: Any) -> None:
    dest = commands.add_parser(
        "dest", help="the client's destinations (where runs are delivered)",
        epilog="example: backupremote --config client.toml dest add nas --type sftp "
        "--url sftp://backup@nas.lan/srv/backups --key-file ~/.ssh/id_ed25519 "
        "--host-key SHA256:... --keep-last 14")
    sub = dest.add_subparsers(dest="action", required=True)

    add = sub.add_parser(
        "add", help="add a destination",
        epilog="example: backupremote dest add nas --type sftp --url "
        "sftp://backup@nas.lan:22/srv/backups --key-file ~/.ssh/id_ed25519 --host-key "
        "SHA256:uJ1p... --keep-last 14   |   dest add usb --type local --url file:///mnt/usb "
        "--gfs 7,4,12,3   |   dest add box --type webdav --url "
        "webdav+https://me@cloud.example/remote.php/dav/files/me/backups --password-stdin "
        "< pw.txt")
    add.add_argument("name")
    # checked with the rest of the destination (VALIDATION_FAILED), not by argparse
    add.add_argument("--type", required=True, metavar="|".join(TYPES))
    add.add_argument("--url", required=True,
                     help="file:///dir, sftp://user@host:port/dir, ftp(s)://user@host/dir, "
                     "webdav+https://host/path, s3+https://KEY@host/bucket/prefix, "
                     "rclone:remote:path")
    _options(add)
    add.set_defaults(onReactor=_withRegistry(addCommand))

    listing = sub.add_parser("list", help="list the destinations",
                             epilog="example: backupremote dest list --json")
    listing.set_defaults(onReactor=_withRegistry(listCommand))

    show = sub.add_parser("show", help="one destination and its last deliveries",
                          epilog="example: backupremote dest show nas")
    show.add_argument("name", help=NAME_HELP)
    show.set_defaults(onReactor=_withRegistry(showCommand))

    update = sub.add_parser(
        "update", help="change a destination (what is not given is kept)",
        epilog="example: backupremote dest update nas --keep-last 30 --host-key SHA256:...")
    update.add_argument("name", help=NAME_HELP)
    update.add_argument("--name", dest="new_name", metavar="NEW", help="rename it (its "
                        "schedules follow)")
    update.add_argument("--url")
    update.add_argument("--revision", type=int,
                        help="refuse the change unless the stored revision is this one")
    update.add_argument("--remove-password", action="store_true",
                        help="forget the stored password")
    update.add_argument("--keep-all", action="store_true",
                        help="drop the retention rules (keep every copy)")
    update.add_argument("--no-fingerprints", action="store_true",
                        help="forget the pinned certificate fingerprints (then the CA file "
                        "or the system's CAs are trusted)")
    _options(update)
    update.set_defaults(onReactor=_withRegistry(updateCommand))

    remove = sub.add_parser("remove", help="delete a destination (not its files)",
                            epilog="example: backupremote dest remove nas")
    remove.add_argument("name", help=NAME_HELP)
    remove.set_defaults(onReactor=_withRegistry(removeCommand))

    test = sub.add_parser(
        "test", help="connect, log in, check the server's identity, write and remove a "
        "probe file", epilog="example: backupremote dest test nas")
    test.add_argument("name", help=NAME_HELP)
    test.set_defaults(onReactor=_withRegistry(testCommand))

    prune_ = sub.add_parser(
        "prune", help="delete our copies its retention no longer keeps",
        epilog="example: backupremote dest prune nas --dry-run")
    prune_.add_argument("name", help=NAME_HELP)
    prune_.add_argument("--dry-run", action="store_true",
                        help="say what would be deleted, delete nothing")
    prune_.set_defaults(onReactor=_withRegistry(pruneCommand))


def _options(parser: argparse.ArgumentParser) -> None:
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the password (S3: the secret key; with --key-file: its "
                        "passphrase) from the first line of stdin; stored encrypted")
    secret.add_argument("--password-file", metavar="F",
                        help="read it from this 0600 file at each use instead")
    parser.add_argument("--key-file", metavar="F", help="SFTP: a private key file (0600)")
    parser.add_argument("--host-key", action="append", default=[], metavar="SHA256:...",
                        help="SFTP: a pinned host key, as `ssh-keygen -l -E sha256` prints "
                        "it (repeatable)")
    parser.add_argument("--known-hosts", metavar="F", help="SFTP: an OpenSSH known_hosts file")
    parser.add_argument("--ca-file", metavar="F",
                        help="FTPS, WebDAV, S3: a private CA to trust (PEM)")
    parser.add_argument("--fingerprint", action="append", default=[], metavar="AB:CD:...",
                        help="FTPS, WebDAV, S3 over HTTPS: pin the server certificate's "
                        "SHA-256 fingerprint instead of trusting a CA (as `client init "
                        "--fingerprint`, `openssl x509 -noout -fingerprint -sha256`); repeat "
                        "it to pin the current and the next certificate during a rotation")
    parser.add_argument("--rclone-config", metavar="F",
                        help="rclone: its config file (default: RCLONE_CONFIG)")
    parser.add_argument("--keep-last", metavar="N",
                        help="retention: keep the newest N copies of each schedule")
    parser.add_argument("--keep-days", metavar="N",
                        help="retention: keep the copies of the last N days")
    parser.add_argument("--gfs", metavar="D,W,M,Y",
                        help="retention: keep the newest copy of each of the last D days, W "
                        "weeks, M months and Y years")


Command = Callable[[ClientConfig, DestinationRegistry, argparse.Namespace, Output, "IReactorTime"],
                   Awaitable[int]]


def _withRegistry(command: Command) -> Callable[..., Awaitable[int]]:
    async def run(reactor: IDestinationReactor, args: argparse.Namespace, output: Output) -> int:
        config = commandConfig(args)
        async with openedStore(config, reactor) as store:
            assert config.dataDir is not None  # openedStore refuses a config without one
            registry = DestinationRegistry.inFolder(reactor, store, config.dataDir)
            return await command(config, registry, args, output, reactor)

    return run


def _readStdin() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise configError("--password-stdin read an empty line")
    return line


def _path(value: str | None) -> str | None:
    return None if value is None else FilePath(value).path  # absolute


def _retention(args: argparse.Namespace, base: Retention) -> Retention:
    if getattr(args, "keep_all", False):
        base = Retention()
    changes: dict[str, Any] = {}
    if args.keep_last is not None:
        changes["keepLast"] = _count("--keep-last", "keepLast", args.keep_last)
    if args.keep_days is not None:
        changes["keepDays"] = _count("--keep-days", "keepDays", args.keep_days)
    if args.gfs is not None:
        changes["gfs"] = parseGFS(args.gfs)
    return evolve(base, **changes)


def _count(flag: str, field: str, text: str) -> int:
    """A whole number of C{--keep-*}; C{VALIDATION_FAILED} naming the flag otherwise."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 100_000):
        from backupremote.protocol.errors import VALIDATION_FAILED, BackupRemoteError

        raise BackupRemoteError(VALIDATION_FAILED, (
            f"{flag} {text!r}: give a whole number from 1 to 100000"),
            details={"fields": {f"retention.{field}": "a whole number from 1 to 100000"}})
    return int(text)


def destinationJSON(destination: StoredDestination) -> dict[str, Any]:
    data: dict[str, Any] = destinationConverter.unstructure(destination)
    for key in ("createdAt", "updatedAt"):
        value = getattr(destination, key)
        data[key] = value.isoformat().replace("+00:00", "Z") if value else None
    return data


def describeDestination(destination: StoredDestination) -> str:
    lines = [f"destination {destination.name} ({destination.id}), {destination.type}, "
             f"revision {destination.revision}",
             f"  url:       {destination.url}"]
    if destination.passwordFile:
        lines.append(f"  password:  from {destination.passwordFile}")
    elif destination.hasSecret:
        lines.append("  password:  stored (encrypted)")
    if destination.keyFile:
        lines.append(f"  key file:  {destination.keyFile}")
    for pin in destination.hostKeys:
        lines.append(f"  host key:  {pin}")
    if destination.knownHosts:
        lines.append(f"  known_hosts: {destination.knownHosts}")
    if destination.caFile:
        lines.append(f"  CA file:   {destination.caFile}")
    for pin in destination.fingerprints:
        lines.append(f"  TLS pin:   {pin}")
    if destination.rcloneConfig:
        lines.append(f"  rclone config: {destination.rcloneConfig}")
    lines.append(f"  retention: {destination.retention.describe()}")
    return "\n".join(lines)


async def addCommand(config: ClientConfig, registry: DestinationRegistry,
                     args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    id = str(uuid.uuid4())
    destination = StoredDestination(
        id=id, name=args.name, type=args.type, url=args.url, keyFile=_path(args.key_file),
        passwordFile=_path(args.password_file), hostKeys=tuple(args.host_key),
        knownHosts=_path(args.known_hosts), caFile=_path(args.ca_file),
        fingerprints=tuple(args.fingerprint), rcloneConfig=_path(args.rclone_config), retention=_retention(args, Retention()),
        hasSecret=args.password_stdin)
    from backupremote.client.destinations.stored import validateDestination

    validateDestination(destination)  # before reading a secret
    sealed = registry.seal(id, _readStdin()) if args.password_stdin else None
    added = await registry.store.add(destination, sealed, datetime.now(UTC))
    output.result(destinationJSON(added), describeDestination(added) + (
        f"\ntest it: backupremote dest test {added.name}"))
    return 0


async def updateCommand(config: ClientConfig, registry: DestinationRegistry,
                        args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    current = await registry.byName(args.name)
    if args.revision is not None and args.revision != current.revision:
        from backupremote.protocol.errors import CONFLICT, BackupRemoteError

        raise BackupRemoteError(CONFLICT, f"destination {current.name} is at revision "
                                f"{current.revision}, not {args.revision}")
    changes: dict[str, Any] = {"retention": _retention(args, current.retention)}
    if args.new_name:
        changes["name"] = args.new_name
    if args.url:
        changes["url"] = args.url
    for flag, field in (("key_file", "keyFile"), ("known_hosts", "knownHosts"),
                        ("ca_file", "caFile"), ("rclone_config", "rcloneConfig")):
        value = getattr(args, flag)
        if value is not None:
            changes[field] = _path(value) if value else None  # "" clears it
    if args.host_key:
        changes["hostKeys"] = tuple(args.host_key)
    if args.no_fingerprints:
        changes["fingerprints"] = ()
    if args.fingerprint:
        changes["fingerprints"] = tuple(args.fingerprint)
    sealed: Any = KEEP
    if args.password_file is not None:
        changes["passwordFile"] = _path(args.password_file)
        sealed = None
    if args.password_stdin:
        changes["passwordFile"] = None
        sealed = registry.seal(current.id, _readStdin())
    if args.remove_password:
        sealed = None
    stored = await registry.store.update(evolve(current, **changes), sealed, datetime.now(UTC))
    output.result(destinationJSON(stored), "updated " + describeDestination(stored))
    return 0


async def listCommand(config: ClientConfig, registry: DestinationRegistry,
                      args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    found = await registry.list()
    lines = [f"{d.name:<20} {d.type:<7} {d.url}  ({d.retention.describe()})" for d in found]
    output.result([destinationJSON(d) for d in found], "\n".join(lines) or
                  "no destinations: add one with `backupremote dest add`")
    return 0


async def showCommand(config: ClientConfig, registry: DestinationRegistry,
                      args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    from backupremote.cli.queue import itemJSON
    from backupremote.client.jobs.runner import now

    destination = await registry.byName(args.name)
    items = await DeliveryStore(registry.store.store, now(reactor)).list(
        destinationId=destination.id)
    recent = items[-10:]
    data = destinationJSON(destination)
    data["deliveries"] = [itemJSON(item) for item in recent]
    lines = [describeDestination(destination)]
    if recent:
        lines.append("  last deliveries:")
        lines += [f"    {item.state:<9} {item.name}  run {item.runId}"
                  + (f"  ({item.reason})" if item.reason else "") for item in recent]
    output.result(data, "\n".join(lines))
    return 0


async def removeCommand(config: ClientConfig, registry: DestinationRegistry,
                        args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    removed = await registry.store.remove(args.name)
    output.result({"removed": removed.id, "name": removed.name},
                  f"removed destination {removed.name} ({removed.id}); the files it holds "
                  "are left where they are")
    return 0


async def testCommand(config: ClientConfig, registry: DestinationRegistry,
                      args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    stored = await registry.byName(args.name)
    destination = await registry.open(stored)
    try:
        await destination.testConnection()
    finally:
        await destination.close()
    output.result({"destination": stored.name, "id": stored.id, "ok": True,
                   "location": destination.location},
                  f"destination {stored.name} works: {destination.location} (logged in, "
                  "identity checked, probe file written and removed)")
    return 0


async def pruneCommand(config: ClientConfig, registry: DestinationRegistry,
                       args: argparse.Namespace, output: Output, reactor: IReactorTime) -> int:
    from backupremote.client.jobs.runner import now

    stored = await registry.byName(args.name)
    deliveries = DeliveryStore(registry.store.store, now(reactor))
    delivered: list[QueueItem] = await deliveries.delivered(stored.id)
    copies = [Copy(item.id, item.name, item.size, item.verifiedAt, item.scheduleId)
              for item in delivered if item.verifiedAt]
    destination = await registry.open(stored)
    try:
        selection = await prune(destination, copies, stored.retention, datetime.now(UTC),
                                args.dry_run)
    finally:
        await destination.close()
    if not args.dry_run:
        await deliveries.markPruned(c.id for c in selection.delete)
    verb = "would delete" if args.dry_run else "deleted"
    names = sorted({c.name for c in selection.delete})
    lines = [f"{stored.name}: {stored.retention.describe()}",
             f"  {verb} {len(names)} of our copies, keeping {len({c.name for c in selection.keep})}"]
    lines += [f"    {name}" for name in names]
    if selection.staleTemporary:
        lines.append(f"  {verb} {len(selection.staleTemporary)} temporary file(s) of "
                     "interrupted uploads")
    if selection.foreign:
        lines.append(f"  left alone: {len(selection.foreign)} file(s) we did not write")
    output.result({"destination": stored.name, "dryRun": args.dry_run, "delete": names,
                   "keep": sorted({c.name for c in selection.keep}),
                   "temporary": list(selection.staleTemporary),
                   "notOurs": list(selection.foreign)}, "\n".join(lines))
    return 0

