"""
Named destinations in the client's store (``backupremote dest add NAME ...``).

A L{StoredDestination} is what the client keeps of one destination: its
name, URL, how the server's identity is checked, where its secret comes
from, and its retention. The secret itself (a password, an S3 secret key,
a key's passphrase) is never part of the model: it is sealed in the
C{destinations.secret} column with the client's C{secrets.key}
(L{backupremote.secretbox}), or read from a 0600 file at each use
(C{passwordFile}). L{DestinationStore} is typed access to the table (one
transaction per call); L{validateDestination} checks a destination before
it is stored, every problem at once.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from attrs import evolve, field, frozen
from twisted.internet.defer import Deferred

from backupremote.client.destinations.urls import TYPES, parseDestinationURL
from backupremote.client.jobs.model import NamedDestination
from backupremote.client.schedules.validation import DESTINATION
from backupremote.client.store import IClientStore
from backupremote.client.store.instants import instantOf, storedInstant
from backupremote.protocol.errors import (
    CONFLICT,
    NOT_FOUND,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.structured import makeConverter

#: A destination's name: what schedules name it by (C{--dest NAME}).
NAME = DESTINATION
#: C{--gfs D,W,M,Y}: how many daily, weekly, monthly and yearly copies.
GFS_PARTS = ("daily", "weekly", "monthly", "yearly")
#: Types whose login needs a secret (a password, or an S3 secret key).
_NEEDS_SECRET = {"ftp", "ftps", "s3"}


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _gfs(value: Any) -> tuple[int, int, int, int] | None:
    return None if value is None else tuple(value)  # type: ignore[return-value]


@frozen
class Retention:
    """
    Which of our copies a destination keeps (nothing set: all of them).

    @ivar keepLast: the newest N copies of each schedule.
    @ivar keepDays: copies verified in the last N days.
    @ivar gfs: grandfather-father-son: the newest copy of each of the last
        D days, W ISO weeks, M months and Y years.
    """

    keepLast: int | None = None
    keepDays: int | None = None
    gfs: tuple[int, int, int, int] | None = field(default=None, converter=_gfs)

    @property
    def keepsAll(self) -> bool:
        return self.keepLast is None and self.keepDays is None and self.gfs is None

    def describe(self) -> str:
        if self.keepsAll:
            return "keep every copy"
        parts = []
        if self.keepLast is not None:
            parts.append(f"the last {self.keepLast}")
        if self.keepDays is not None:
            parts.append(f"{self.keepDays} days")
        if self.gfs is not None:
            parts.append("GFS " + ",".join(str(n) for n in self.gfs) + " (d,w,m,y)")
        return "keep " + " + ".join(parts) + ", and always the newest verified copy"


@frozen
class StoredDestination:
    """
    One destination of the client.

    @ivar id: a uuid4 string, fixed at creation.
    @ivar url: its canonical URL (L{parseDestinationURL}); never a secret.
    @ivar keyFile: SFTP: a private key file (0600).
    @ivar passwordFile: a 0600 file holding the password (or S3 secret
        key), read at each use, instead of a sealed one.
    @ivar hostKeys: SFTP: pinned host key fingerprints (C{SHA256:...}).
    @ivar knownHosts: SFTP: an OpenSSH known_hosts file to check against.
    @ivar caFile: FTPS, WebDAV, S3: a private CA to trust (PEM).
    @ivar fingerprints: FTPS, WebDAV and S3 over HTTPS: the pinned SHA-256
        fingerprints of the server's TLS certificate (C{AB:CD:...}, as
        C{client.toml}'s server pins; several during a rotation), checked
        instead of a CA.
    @ivar rcloneConfig: rclone: its config file (else C{RCLONE_CONFIG}).
    @ivar hasSecret: a secret is sealed in the store for it.
    """

    id: str
    name: str
    type: str
    url: str
    keyFile: str | None = None
    passwordFile: str | None = None
    hostKeys: tuple[str, ...] = field(default=(), converter=_tuple)
    knownHosts: str | None = None
    caFile: str | None = None
    fingerprints: tuple[str, ...] = field(default=(), converter=_tuple)
    rcloneConfig: str | None = None
    retention: Retention = Retention()
    hasSecret: bool = False
    revision: int = 1
    createdAt: datetime | None = None
    updatedAt: datetime | None = None

    def reference(self) -> NamedDestination:
        """How a job names it (L{backupremote.client.jobs.JobRequest.destinations})."""
        return NamedDestination(self.id, self.name, self.type)


destinationConverter = makeConverter(forbidExtraKeys=True)
#: the columns of their own, not part of the JSON definition
_OWN_COLUMNS = ("id", "name", "type", "revision", "hasSecret", "createdAt", "updatedAt")


def validateDestination(destination: StoredDestination) -> StoredDestination:
    """
    Return C{destination} with its URL in canonical form, or raise one
    C{VALIDATION_FAILED} whose C{details.fields} names every bad field.
    """
    fields: dict[str, str] = {}
    if not isinstance(destination.name, str) or not NAME.fullmatch(destination.name):
        fields["name"] = ("1-64 letters, digits and . _ - (starting with a letter or a "
                          "digit)")
    if destination.type not in TYPES:
        fields["type"] = f"must be one of {', '.join(TYPES)}"
    url = destination.url
    try:
        parsed = parseDestinationURL(destination.url)
    except BackupRemoteError as error:
        fields["url"] = error.message
    else:
        url = parsed.url
        if destination.type in TYPES and parsed.type != destination.type:
            fields["type"] = (f"is {destination.type}, but the URL is of type {parsed.type} "
                              f"({url.split(':', 1)[0]}:...)")
    kind = destination.type
    if destination.hostKeys and kind != "sftp":
        fields["hostKeys"] = "only an SFTP destination has an SSH host key"
    if destination.knownHosts and kind != "sftp":
        fields["knownHosts"] = "only an SFTP destination has known_hosts"
    if destination.keyFile and kind != "sftp":
        fields["keyFile"] = "only an SFTP destination logs in with a key file"
    if destination.caFile and kind not in ("ftps", "webdav", "s3"):
        fields["caFile"] = "only FTPS, WebDAV and S3 destinations speak TLS"
    fingerprints = destination.fingerprints
    if fingerprints:
        problem = _pinProblem(kind, url, destination)
        if problem is None:
            from backupremote.tls.client import pinList

            try:
                fingerprints = pinList(fingerprints)
            except BackupRemoteError as error:
                problem = error.message
        if problem is not None:
            fields["fingerprints"] = problem
    if destination.rcloneConfig and kind != "rclone":
        fields["rcloneConfig"] = "only an rclone destination has an rclone config"
    if destination.hasSecret and destination.passwordFile:
        fields["passwordFile"] = "give the password on stdin or in a file, not both"
    hasSecret = destination.hasSecret or destination.passwordFile is not None
    if kind in _NEEDS_SECRET and not hasSecret:
        fields["password"] = (f"a {kind} destination needs its "
                              + ("secret key" if kind == "s3" else "password")
                              + ": --password-stdin or --password-file")
    if kind == "sftp" and not hasSecret and not destination.keyFile:
        fields["password"] = "an SFTP destination needs --key-file or a password"
    if kind == "local" and hasSecret:
        fields["password"] = "a local folder takes no password"
    retention = destination.retention
    for name in ("keepLast", "keepDays"):
        value = getattr(retention, name)
        if value is not None and (not isinstance(value, int) or not 1 <= value <= 100_000):
            fields[f"retention.{name}"] = "must be a whole number from 1 to 100000"
    if retention.gfs is not None:
        if (len(retention.gfs) != 4 or not all(isinstance(n, int) and 0 <= n <= 10_000
                                                for n in retention.gfs)
                or not any(retention.gfs)):
            fields["retention.gfs"] = ("must be four counts D,W,M,Y (0-10000, not all 0), "
                                       "like 7,4,12,3")
    if fields:
        raise BackupRemoteError(VALIDATION_FAILED, "the destination is not valid: " + "; ".join(
            f"{name}: {problem}" for name, problem in sorted(fields.items())),
            details={"fields": fields})
    return evolve(destination, url=url, fingerprints=fingerprints)


def _pinProblem(kind: str, url: str, destination: StoredDestination) -> str | None:
    """Why C{destination} cannot pin a TLS certificate, or C{None}."""
    if kind not in ("ftps", "webdav", "s3"):
        return "only FTPS, WebDAV and S3 destinations speak TLS"
    if kind != "ftps" and not url.split(":", 1)[0].endswith("+https"):
        return f"a {url.split(':', 1)[0]}:// URL has no TLS to pin: use {kind}+https://"
    if destination.caFile:
        return ("pin the certificate or trust a CA file, not both (`--ca-file ''` "
                "forgets the CA file)")
    return None


def parseGFS(text: str) -> tuple[int, int, int, int]:
    """C{D,W,M,Y} as four counts; C{VALIDATION_FAILED} otherwise."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4 or not all(part.isascii() and part.isdigit() for part in parts):
        raise BackupRemoteError(VALIDATION_FAILED, (
            f"--gfs {text!r}: give four counts D,W,M,Y (daily, weekly, monthly, yearly), "
            "like 7,4,12,3"), details={"fields": {"retention.gfs": "four counts D,W,M,Y"}})
    return tuple(int(part) for part in parts)  # type: ignore[return-value]




def _definition(destination: StoredDestination) -> str:
    data = destinationConverter.unstructure(destination)
    for name in _OWN_COLUMNS:
        data.pop(name)
    return json.dumps(data, sort_keys=True)


_SELECT = ("SELECT id, name, type, revision, definition, secret IS NOT NULL, createdAt, "
           "updatedAt FROM destinations")


def _fromRow(row: tuple[Any, ...]) -> StoredDestination:
    id, name, type, revision, definition, hasSecret, createdAt, updatedAt = row
    data = json.loads(definition)
    data.update(id=id, name=name, type=type, revision=revision, hasSecret=bool(hasSecret),
                createdAt=createdAt, updatedAt=updatedAt)
    stored = destinationConverter.structure(data, StoredDestination)
    return evolve(stored, createdAt=instantOf(createdAt), updatedAt=instantOf(updatedAt))


def notFound(idOrName: str, names: list[str]) -> BackupRemoteError:
    import difflib

    close = difflib.get_close_matches(idOrName, names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return BackupRemoteError(
        NOT_FOUND, f"no destination has the id or name {idOrName!r}{hint} "
        "(`backupremote dest list` shows them)",
        details={"didYouMean": close[0]} if close else {})


def findDestination(db: sqlite3.Connection, idOrName: str) -> StoredDestination:
    """The destination whose id, or else name, is C{idOrName}, in a transaction."""
    row = db.execute(f"{_SELECT} WHERE id = ?", (idOrName,)).fetchone()
    if row is None:
        row = db.execute(f"{_SELECT} WHERE name = ?", (idOrName,)).fetchone()
    if row is None:
        raise notFound(idOrName, [n for (n,) in db.execute("SELECT name FROM destinations")])
    return _fromRow(row)


def sealedSecret(db: sqlite3.Connection, destinationId: str) -> str | None:
    row = db.execute("SELECT secret FROM destinations WHERE id = ?", (destinationId,)).fetchone()
    return row[0] if row else None


#: L{DestinationStore.update}'s C{secret}: leave the sealed secret as it is.
KEEP = object()


class DestinationStore:
    """The C{destinations} table: one transaction per call."""

    def __init__(self, store: IClientStore) -> None:
        self.store = store

    def add(self, destination: StoredDestination, sealed: str | None,
            now: datetime) -> Deferred[StoredDestination]:
        """Store a new destination (revision 1); C{CONFLICT} if its name is taken."""
        destination = validateDestination(evolve(destination, hasSecret=sealed is not None,
                                                 revision=1))

        def work(db: sqlite3.Connection) -> StoredDestination:
            _refuseTakenName(db, destination.name, None)
            db.execute(
                "INSERT INTO destinations (id, name, type, revision, definition, secret, "
                "createdAt, updatedAt) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
                (destination.id, destination.name, destination.type,
                 _definition(destination), sealed, storedInstant(now), storedInstant(now)))
            return findDestination(db, destination.id)

        return self.store.transact(work)

    def update(self, destination: StoredDestination, sealed: Any,
               now: datetime) -> Deferred[StoredDestination]:
        """
        Replace the stored destination of C{destination.id}, whose revision
        must still be C{destination.revision} (else C{CONFLICT}). C{sealed}
        is the new sealed secret, C{None} to forget it, or L{KEEP}. A
        rename is carried into the schedules that name it.
        """

        def work(db: sqlite3.Connection) -> StoredDestination:
            current = findDestination(db, destination.id)
            if current.revision != destination.revision:
                raise BackupRemoteError(CONFLICT, (
                    f"destination {current.name} changed since it was read (revision "
                    f"{current.revision}, not {destination.revision}); show it again and "
                    "retry"))
            secret = sealedSecret(db, destination.id) if sealed is KEEP else sealed
            changed = validateDestination(evolve(
                destination, hasSecret=secret is not None, revision=current.revision + 1))
            _refuseTakenName(db, changed.name, changed.id)
            db.execute(
                "UPDATE destinations SET name = ?, type = ?, revision = ?, definition = ?, "
                "secret = ?, updatedAt = ? WHERE id = ?",
                (changed.name, changed.type, changed.revision, _definition(changed), secret,
                 storedInstant(now), changed.id))
            if changed.name != current.name:
                _renameInSchedules(db, current.name, changed.name, now)
            return findDestination(db, changed.id)

        return self.store.transact(work)

    def remove(self, idOrName: str) -> Deferred[StoredDestination]:
        """
        Delete a destination; C{CONFLICT} while a schedule names it or a
        delivery to it is not finished.
        """

        def work(db: sqlite3.Connection) -> StoredDestination:
            destination = findDestination(db, idOrName)
            users = schedulesNaming(db, destination.name)
            if users:
                raise BackupRemoteError(CONFLICT, (
                    f"destination {destination.name} is used by schedule(s) "
                    f"{', '.join(users)}; remove it from them first (`backupremote schedule "
                    "update NAME --no-dest --dest ...`)"))
            busy = db.execute(
                "SELECT count(*) FROM deliveries WHERE destinationId = ? AND state NOT IN "
                "('delivered', 'failed')", (destination.id,)).fetchone()[0]
            if busy:
                raise BackupRemoteError(CONFLICT, (
                    f"destination {destination.name} has {busy} delivery(ies) in the queue; "
                    "let them finish (`backupremote queue`)"))
            db.execute("DELETE FROM destinations WHERE id = ?", (destination.id,))
            return destination

        return self.store.transact(work)

    def get(self, idOrName: str) -> Deferred[StoredDestination]:
        """The destination whose id, or else name, is C{idOrName}; C{NOT_FOUND} if none."""
        return self.store.transact(lambda db: findDestination(db, idOrName))

    def sealed(self, destinationId: str) -> Deferred[str | None]:
        """The sealed secret of a destination, if it has one."""
        return self.store.transact(lambda db: sealedSecret(db, destinationId))

    def list(self) -> Deferred[list[StoredDestination]]:
        """Every destination, by name."""
        return self.store.transact(lambda db: [
            _fromRow(row) for row in db.execute(f"{_SELECT} ORDER BY name").fetchall()])


def _refuseTakenName(db: sqlite3.Connection, name: str, ownId: str | None) -> None:
    row = db.execute("SELECT id FROM destinations WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] != ownId:
        raise BackupRemoteError(CONFLICT, f"a destination is already named {name!r}; "
                                "choose another name")


def schedulesNaming(db: sqlite3.Connection, name: str) -> list[str]:
    """The names of the schedules that deliver to the destination C{name}."""
    return sorted(scheduleName for scheduleName, definition in db.execute(
        "SELECT name, definition FROM schedules")
        if name in json.loads(definition).get("destinations", ()))


def _renameInSchedules(db: sqlite3.Connection, old: str, new: str, now: datetime) -> None:
    for id, definition in db.execute("SELECT id, definition FROM schedules").fetchall():
        data = json.loads(definition)
        names = data.get("destinations", [])
        if old in names:
            data["destinations"] = [new if n == old else n for n in names]
            data["revision"] = data.get("revision", 1) + 1
            db.execute("UPDATE schedules SET revision = ?, definition = ?, updatedAt = ? "
                       "WHERE id = ?", (data["revision"], json.dumps(data, sort_keys=True),
                                        storedInstant(now), id))
