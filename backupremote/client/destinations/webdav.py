"""
A WebDAV collection (Nextcloud, ownCloud, Apache mod_dav, nginx, wsgidav...)
as a destination.

A file is PUT to a temporary name in the folder of its final name (the folder
made with MKCOL when missing), streamed from the local file and hashed on the
way; the read-back GETs it back into a SHA-256; completing is a MOVE to the
final name (C{Overwrite: T}), atomic on the server's file system. Listings
are PROPFIND with C{Depth: 1} on the root and on each of its folders (servers
often refuse C{Depth: infinity}). Credentials always go through C{auth=}
(HTTP basic, never in the URL) and every request has a stall timeout.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.destinations.davxml import PROPFIND_BODY, DavEntry, parseMultistatus
from backupremote.client.destinations.httpsession import HTTPSession
from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.destinations.interface import (
    DigestCounter,
    IDestination,
    IUploadJournal,
    KnownDigest,
    PendingUpload,
    Progress,
    ReadBack,
    RemoteFile,
)
from backupremote.client.destinations.names import (
    PROBE_PREFIX,
    checkAnyName,
    checkName,
    isListable,
    isTemporary,
    joinName,
    splitName,
    temporaryName,
)
from backupremote.client.destinations.urls import WebDAVURL
from backupremote.protocol.errors import (
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    BackupRemoteError,
)
from backupremote.reactors import IConnectingReactor

log = Logger()

_PROPFIND_HEADERS = {"Content-Type": 'application/xml; charset="utf-8"'}


@implementer(IDestination)
class WebDAVDestination:
    """The collection at C{url.baseURL}: C{NAME} is C{baseURL + NAME}."""

    type = "webdav"

    def __init__(self, reactor: IConnectingReactor, url: WebDAVURL, password: str | None,
                 verification: PeerVerification | None = None,
                 timeout: float = 60.0) -> None:
        self.url = url
        self.base = url.baseURL
        self._basePath = unquote(urlsplit(self.base).path).rstrip("/")
        self.location = f"WebDAV {self.base}"
        auth = (url.user, password or "") if url.user else None
        self._session = HTTPSession(reactor, self.location, auth, verification, timeout)

    def _url(self, name: str) -> str:
        return self.base + name

    async def _call(self, method: str, name: str, what: str, ok: tuple[int, ...],
                    headers: dict[str, str] | None = None, body: Any = None,
                    sink: Any = None, notFound: str = DESTINATION_NOT_FOUND) -> Any:
        response = await self._session.request(method, self._url(name), headers, body, sink)
        if response.code not in ok:
            raise self._session.statusError(response, what, notFound)
        return response

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._testConnection())

    async def _testConnection(self) -> None:
        entries = await self._propfind("", "0", f"look at {self.base}")
        if not entries or not entries[0].collection:
            raise BackupRemoteError(
                DESTINATION_REFUSED, f"{self.location} is not a folder (collection)")
        probe = PROBE_PREFIX + secrets.token_hex(8)
        await self._call("PUT", probe, "write a probe file", (200, 201, 204),
                         {"Content-Type": "application/octet-stream"}, b"backupremote probe\n",
                         notFound=DESTINATION_REFUSED)
        await self._delete(probe)

    def put(self, source: FilePath, name: str,
            progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        return Deferred.fromCoroutine(self._put(source, name, progress, known))

    async def _put(self, source: FilePath, name: str, progress: Progress | None,
                   known: KnownDigest | None) -> PendingUpload:
        checkName(name)
        size = source.getsize()  # OSError for a missing file, before anything is sent
        temporary = temporaryName(name)
        folder, _ = splitName(name)
        if folder is not None:
            await self._makeFolder(folder)
        digest = DigestCounter(known)

        def sent(block: bytes) -> None:
            digest.update(block)
            if progress is not None:
                progress(digest.size)

        try:
            await self._call("PUT", temporary, f"PUT {temporary}", (200, 201, 204),
                             {"Content-Type": "application/octet-stream"},
                             self._session.fileBody(source.path, 0, size, sent),
                             notFound=DESTINATION_REFUSED)
            if digest.size != size:
                raise OSError(f"{source.path} changed size while it was sent")
        except BaseException:
            try:
                await self._delete(temporary)
            except BackupRemoteError as e:
                log.warn("{location}: could not remove {name}: {error}",
                         location=self.location, name=temporary, error=str(e))
            raise
        if size == 0 and progress is not None:
            progress(0)
        return PendingUpload(name, temporary, size, digest.hexdigest())

    async def _makeFolder(self, folder: str) -> None:
        response = await self._session.request("MKCOL", self._url(folder + "/"))
        # 201 made; 405 (and some servers' 301 or 409 after a race) already there
        if response.code in (201, 405):
            return
        entries = await self._propfind(folder + "/", "0", f"look at {folder}",
                                       notFound=DESTINATION_REFUSED)
        if not (entries and entries[0].collection):
            raise self._session.statusError(response, f"MKCOL {folder}", DESTINATION_REFUSED)

    def readBack(self, name: str) -> Deferred[ReadBack]:
        return Deferred.fromCoroutine(self._readBack(name))

    async def _readBack(self, name: str) -> ReadBack:
        checkAnyName(name)
        digest = DigestCounter()
        await self._call("GET", name, f"GET {name}", (200,), sink=digest.update)
        return digest.readBack()

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        return Deferred.fromCoroutine(self._complete(upload))

    async def _complete(self, upload: PendingUpload) -> None:
        checkName(upload.name)
        checkAnyName(upload.temporaryName)
        await self._call("MOVE", upload.temporaryName, f"MOVE {upload.temporaryName}",
                         (201, 204), {"Destination": self._url(upload.name), "Overwrite": "T"})

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return Deferred.fromCoroutine(self._listFiles())

    async def _listFiles(self) -> list[RemoteFile]:
        found: list[RemoteFile] = []
        for entry, name in self._members(await self._propfind("", "1", "list the folder"), None):
            if entry.collection:
                if isListable(joinName(name, "f")):  # a folder name we could have made
                    inner = await self._propfind(name + "/", "1", f"list {name}",
                                                 notFound=DESTINATION_REFUSED)
                    found.extend(self._file(e, n) for e, n in self._members(inner, name)
                                 if not e.collection and isListable(n))
            elif isListable(name):
                found.append(self._file(entry, name))
        return found

    def _members(self, entries: list[DavEntry], folder: str | None) -> list[tuple[DavEntry, str]]:
        """The entries directly inside C{folder} (the root if C{None}), with their names."""
        parent = self._basePath + (f"/{folder}" if folder else "")
        members = []
        for entry in entries:
            if not entry.path.startswith(parent + "/"):
                continue
            base = entry.path[len(parent) + 1:]
            if base and "/" not in base:
                members.append((entry, joinName(folder, base)))
        return members

    @staticmethod
    def _file(entry: DavEntry, name: str) -> RemoteFile:
        return RemoteFile(name, entry.size or 0, entry.modified, isTemporary(name))

    async def _propfind(self, name: str, depth: str, what: str,
                        notFound: str = DESTINATION_REFUSED) -> list[DavEntry]:
        headers = dict(_PROPFIND_HEADERS, Depth=depth)
        response = await self._call("PROPFIND", name, what, (207,), headers, PROPFIND_BODY,
                                    notFound=notFound)
        return parseMultistatus(response.body, self.location)

    def delete(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._checkedDelete(name))

    async def _checkedDelete(self, name: str) -> None:
        await self._delete(checkAnyName(name))

    async def _delete(self, name: str) -> None:
        response = await self._session.request("DELETE", self._url(name))
        if response.code not in (200, 202, 204, 404):
            raise self._session.statusError(response, f"DELETE {name}")

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._session.close())
