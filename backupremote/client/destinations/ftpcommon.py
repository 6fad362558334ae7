"""
What the FTP and FTPS destinations share: paths under the root, the reply
codes as registry errors, and the parsing of C{LIST} lines.
"""

from __future__ import annotations

from typing import Any

from twisted.protocols.ftp import FTPFileListProtocol

from backupremote.client.destinations.interface import RemoteFile
from backupremote.client.destinations.names import isFolderName, isListable, isTemporary
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)

#: Bytes per read of the local file and per write to the data connection.
CHUNK_SIZE = 256 * 1024
TIMEOUT = 30.0


def joinPath(root: str, name: str | None) -> str:
    """C{root/name} (C{root} is absolute once the login folder is known)."""
    if not name:
        return root
    return ("" if root == "/" else root.rstrip("/")) + "/" + name


def absoluteRoot(path: str, loginFolder: str) -> str:
    """The URL's path made absolute: relative paths start at the login folder."""
    if path.startswith("/"):
        return path
    return joinPath(loginFolder or "/", path) if path else (loginFolder or "/")


def parsePWD(reply: str) -> str:
    """The folder in a C{257 "/home/user" is the current directory} reply."""
    first, _, rest = reply.partition('"')
    folder, _, _ = rest.rpartition('"')
    return folder.replace('""', '"') if rest else "/"


def replyError(location: str, code: int | None, text: str, doing: str,
               notFound: bool = False) -> BackupRemoteError:
    """
    The registry error for an FTP reply C{code} (C{None}: no reply, the
    connection is gone) to what we were C{doing}. C{notFound}: a 550 means
    the file is not there.
    """
    quoted = text.strip()[:200]
    if code is None:
        return BackupRemoteError(DESTINATION_UNREACHABLE,
                                 f"{location}: the connection was lost while {doing}")
    if code == 530:
        return BackupRemoteError(DESTINATION_AUTH_FAILED,
                                 f"{location}: the server refused the login ({quoted!r})")
    if code in (452, 552):
        return BackupRemoteError(DESTINATION_FULL,
                                 f"{location}: no space left while {doing} ({quoted!r})")
    if code == 550 and notFound:
        return BackupRemoteError(DESTINATION_NOT_FOUND, f"{location}: {doing}: no such file")
    if code in (421, 425, 426):
        return BackupRemoteError(DESTINATION_UNREACHABLE,
                                 f"{location}: the server broke off while {doing} ({quoted!r})")
    return BackupRemoteError(DESTINATION_REFUSED,
                             f"{location}: {doing}: the server said {quoted!r}")


_parser = FTPFileListProtocol()


def listedEntries(lines: list[str]) -> list[tuple[str, str, int]]:
    """C{(name, type, size)} of each C{LIST} line (type C{d}, C{-} or C{l}...)."""
    entries = []
    for line in lines:
        parsed: dict[str, Any] | None = _parser.parseDirectoryLine(line.rstrip("\r\n"))
        if parsed is None or parsed["filename"] in (".", ".."):
            continue
        entries.append((parsed["filename"], parsed["filetype"], parsed["size"]))
    return entries


def remoteFiles(folder: str | None, entries: list[tuple[str, str, int]]) -> list[RemoteFile]:
    """The files of a C{LIST} we report (no modification time: C{LIST} has none exact)."""
    found = []
    for filename, kind, size in entries:
        name = f"{folder}/{filename}" if folder else filename
        if kind == "-" and isListable(name):
            found.append(RemoteFile(name, size, None, isTemporary(name)))
    return found


def subfolders(entries: list[tuple[str, str, int]]) -> list[str]:
    return [filename for filename, kind, _ in entries if kind == "d" and isFolderName(filename)]
