"""
Destination URLs, parsed into one attrs model per type.

    file:///abs/dir                              LocalURL
    sftp://user@host[:port]/abs/dir              SFTPURL    (/~/dir: relative to the login folder)
    ftp://user@host[:port]/dir                   FTPURL     (tls=False)
    ftps://user@host[:port]/dir                  FTPURL     (tls=True: explicit TLS, AUTH TLS on port 21)
    webdav+https://[user@]host[:port]/path       WebDAVURL  (webdav+http too: loopback, tests)
    s3+https://KEY@host[:port]/bucket[/prefix]   S3URL      (s3+http too; ?region=NAME)
    rclone:remote:path                           RcloneURL

A URL never carries a secret: one with a password (C{user:pw@}) is refused,
and the message does not repeat it. Secrets come from C{--password-stdin},
C{--key-file} or files. Each model's C{url} is its canonical text, and
C{parseDestinationURL(model.url) == model}.
"""

from __future__ import annotations

import re
from typing import ClassVar, Union
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from attrs import frozen

from backupremote.protocol.features import destinationFeature
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

TYPES: tuple[str, ...] = ("local", "sftp", "ftp", "ftps", "webdav", "s3", "rclone")

_USER = re.compile(r"[^\s:@/]{1,256}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REMOTE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_. -]{0,99}")
_REGION = re.compile(r"[a-z0-9-]{1,40}")


def _invalid(message: str) -> BackupRemoteError:
    return BackupRemoteError(CONFIG_INVALID, f"destination URL: {message}")


def _hostText(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _authority(user: str | None, host: str, port: int, defaultPort: int) -> str:
    userPart = f"{quote(user, safe='')}@" if user else ""
    portPart = "" if port == defaultPort else f":{port}"
    return f"{userPart}{_hostText(host)}{portPart}"


def _pathText(path: str) -> str:
    """An absolute path, or one relative to the login folder as C{/~/path}."""
    if path.startswith("/"):
        return quote(path)
    return "/~" + (f"/{quote(path)}" if path else "")


@frozen
class LocalURL:
    """A folder on this machine (an absolute path)."""

    type: ClassVar[str] = "local"
    path: str

    @property
    def url(self) -> str:
        return "file://" + quote(self.path)


@frozen
class SFTPURL:
    """
    A folder on an SSH server. C{path} is absolute, or relative to the
    login folder when the URL's path starts with C{/~/} (or is C{/~}).
    """

    type: ClassVar[str] = "sftp"
    defaultPort: ClassVar[int] = 22
    user: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        return f"sftp://{_authority(self.user, self.host, self.port, 22)}{_pathText(self.path)}"


@frozen
class FTPURL:
    """
    A folder on an FTP server; C{tls} for FTPS (explicit TLS: C{AUTH TLS} on
    the control connection, protected data connections). C{path} is as the
    server sees it: absolute, or relative to the login folder (C{/~/dir}).
    """

    defaultPort: ClassVar[int] = 21
    user: str
    host: str
    port: int
    path: str
    tls: bool

    @property
    def type(self) -> str:  # type: ignore[override]
        return "ftps" if self.tls else "ftp"

    @property
    def url(self) -> str:
        return f"{self.type}://{_authority(self.user, self.host, self.port, 21)}{_pathText(self.path)}"


@frozen
class WebDAVURL:
    """A collection on a WebDAV server (Nextcloud: C{/remote.php/dav/files/USER/dir})."""

    type: ClassVar[str] = "webdav"
    secure: bool
    user: str | None
    host: str
    port: int
    path: str

    @property
    def baseURL(self) -> str:
        """The collection's http(s) URL, without the user, ending in C{/}."""
        scheme = "https" if self.secure else "http"
        default = 443 if self.secure else 80
        return f"{scheme}://{_authority(None, self.host, self.port, default)}{quote(self.path.rstrip('/'))}/"

    @property
    def url(self) -> str:
        scheme = "webdav+https" if self.secure else "webdav+http"
        default = 443 if self.secure else 80
        return f"{scheme}://{_authority(self.user, self.host, self.port, default)}{quote(self.path)}"


@frozen
class S3URL:
    """A bucket (and a key prefix in it, C{""} or ending in C{/}) on an S3-compatible server."""

    type: ClassVar[str] = "s3"
    secure: bool
    accessKey: str
    host: str
    port: int
    bucket: str
    prefix: str
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{_authority(None, self.host, self.port, 443 if self.secure else 80)}"

    @property
    def url(self) -> str:
        scheme = "s3+https" if self.secure else "s3+http"
        default = 443 if self.secure else 80
        query = "" if self.region == "us-east-1" else f"?region={self.region}"
        path = quote(f"/{self.bucket}/{self.prefix}".rstrip("/"))
        return f"{scheme}://{_authority(self.accessKey, self.host, self.port, default)}{path}{query}"


@frozen
class RcloneURL:
    """A path on a remote of the user's rclone configuration (C{rclone config})."""

    type: ClassVar[str] = "rclone"
    remote: str
    path: str

    @property
    def url(self) -> str:
        return f"rclone:{self.remote}:{self.path}"


DestinationURL = Union[LocalURL, SFTPURL, FTPURL, WebDAVURL, S3URL, RcloneURL]


def featureOf(url: DestinationURL) -> str:
    """The licence feature that allows delivering to C{url}: C{destination.<type>}."""
    return destinationFeature(url.type)


def _split(text: str):  # type: ignore[no-untyped-def]
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError as e:
        raise _invalid(f"cannot read it ({e})") from None
    if parts.fragment:
        raise _invalid("a fragment (#...) has no meaning here")
    if "@" in parts.netloc and parts.password is not None:
        raise _invalid(
            "it holds a password: remove it from the URL and give it with "
            "--password-stdin or a file")
    return parts


def _host(parts) -> str:  # type: ignore[no-untyped-def]
    host = parts.hostname
    raw = parts.netloc.rpartition("@")[2]
    raw = raw[: raw.rindex("]") + 1] if raw.startswith("[") else raw.partition(":")[0]
    if not host or not _HOST.fullmatch(raw):
        raise _invalid("it needs a host name or address")
    return host


def _port(parts, default: int) -> int:  # type: ignore[no-untyped-def]
    port = parts.port
    if port is None:
        if parts.netloc.endswith(":"):
            raise _invalid("the port after ':' is missing")
        return default
    if not 1 <= port <= 65535:
        raise _invalid(f"port {port} is out of range")
    return port


def _user(parts, required: str | None) -> str | None:  # type: ignore[no-untyped-def]
    if "@" not in parts.netloc:
        if required:
            raise _invalid(f"it needs the {required} before '@' in the address")
        return None
    user = unquote(parts.username or "")
    if not _USER.fullmatch(user):
        raise _invalid("the user name before '@' is empty or has spaces, ':' or '/'")
    return user


def _path(parts, homeRelative: bool) -> str:  # type: ignore[no-untyped-def]
    path = unquote(parts.path)
    if "\x00" in path or any(part == ".." for part in path.split("/")):
        raise _invalid("the path may not hold '..' or NUL")
    if not path.startswith("/"):
        raise _invalid("the path must start with '/'")
    if homeRelative and (path == "/~" or path.startswith("/~/")):
        return path[3:].rstrip("/")
    return path.rstrip("/") or "/"


def _noQuery(parts) -> None:  # type: ignore[no-untyped-def]
    if parts.query:
        raise _invalid("this kind of URL takes no query (?...)")


def _local(text: str) -> LocalURL:
    parts = _split(text)
    _noQuery(parts)
    if parts.netloc not in ("", "localhost"):
        raise _invalid("file:// URLs name a folder on this machine: file:///abs/dir")
    return LocalURL(_path(parts, homeRelative=False))


def _sftp(text: str) -> SFTPURL:
    parts = _split(text)
    _noQuery(parts)
    user = _user(parts, "user")
    assert user is not None
    return SFTPURL(user, _host(parts), _port(parts, 22), _path(parts, homeRelative=True))


def _ftp(text: str, tls: bool) -> FTPURL:
    parts = _split(text)
    _noQuery(parts)
    user = _user(parts, "user")
    assert user is not None
    return FTPURL(user, _host(parts), _port(parts, 21), _path(parts, homeRelative=True), tls)


def _webdav(text: str, secure: bool) -> WebDAVURL:
    parts = _split(text.split("+", 1)[1])
    _noQuery(parts)
    return WebDAVURL(secure, _user(parts, None), _host(parts),
                     _port(parts, 443 if secure else 80), _path(parts, homeRelative=False))


def _s3(text: str, secure: bool) -> S3URL:
    parts = _split(text.split("+", 1)[1])
    key = _user(parts, "access key id")
    assert key is not None
    path = unquote(parts.path).lstrip("/")
    bucket, _, prefix = path.partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise _invalid("it needs a bucket name after the host (3-63 of a-z 0-9 . -)")
    if any(part in ("", ".", "..") for part in prefix.rstrip("/").split("/")) and prefix.strip("/"):
        raise _invalid("the key prefix may not hold empty parts, '.' or '..'")
    prefix = prefix.strip("/")
    region = "us-east-1"
    for key_, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key_ != "region" or not _REGION.fullmatch(value):
            raise _invalid("the only query it takes is ?region=NAME")
        region = value
    return S3URL(secure, key, _host(parts), _port(parts, 443 if secure else 80), bucket,
                 prefix + "/" if prefix else "", region)


def _rclone(text: str) -> RcloneURL:
    remote, colon, path = text[len("rclone:"):].partition(":")
    if not colon or not _REMOTE.fullmatch(remote) or remote.endswith(" "):
        raise _invalid("use rclone:REMOTE:PATH with REMOTE a remote of your rclone config")
    if "\x00" in path or any(part == ".." for part in path.split("/")):
        raise _invalid("the path may not hold '..' or NUL")
    return RcloneURL(remote, path.rstrip("/") if path.strip("/") else path)


def parseDestinationURL(text: str) -> DestinationURL:
    """
    The model of a destination URL.

    @raise BackupRemoteError: C{CONFIG_INVALID} naming what is wrong (and
        never quoting a password).
    """
    if not isinstance(text, str) or not text or text != text.strip():
        raise _invalid("it is empty or has spaces around it")
    scheme = text.partition(":")[0].lower()
    if scheme == "file":
        return _local(text)
    if scheme == "sftp":
        return _sftp(text)
    if scheme in ("ftp", "ftps"):
        return _ftp(text, scheme == "ftps")
    if scheme in ("webdav+https", "webdav+http"):
        return _webdav(text, scheme == "webdav+https")
    if scheme in ("s3+https", "s3+http"):
        return _s3(text, scheme == "s3+https")
    if scheme == "rclone":
        return _rclone(text)
    raise _invalid(
        "unknown kind: use file:///dir, sftp://user@host/dir, ftp(s)://user@host/dir, "
        "webdav+https://host/path, s3+https://KEY@host/bucket/prefix or rclone:remote:path")
