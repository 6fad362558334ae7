"""
Trusting an SSH server, and logging in to it: the host key policy and the
credentials of an SFTP destination.

A host key is trusted when it has one of the pinned SHA-256 fingerprints
(C{SHA256:...}, exactly as C{ssh-keygen -l -E sha256} prints it) or is in a
known_hosts file for that host and port. A host the known_hosts file does
not know is refused unless C{acceptNew} was asked for explicitly (then the
key is added to the file, as OpenSSH's C{StrictHostKeyChecking=accept-new}
does). A key that differs from the known one is always refused. With
nothing pinned the connection is refused, unless C{insecure}: then every key
is accepted and each connection logs a warning that says so.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from attrs import field, frozen
from twisted.conch.client.knownhosts import HostKeyChanged, KnownHostsFile
from twisted.conch.ssh.keys import BadKeyError, EncryptedKeyError, Key
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_IDENTITY_MISMATCH,
    BackupRemoteError,
)

log = Logger()

_FINGERPRINT = re.compile(r"(?:SHA256:)?([A-Za-z0-9+/]{43})=?")


def normalizeHostKeyFingerprint(text: str) -> str:
    """
    C{SHA256:<43 base64 characters>}, from that form or without its prefix
    or with base64 padding.

    @raise BackupRemoteError: C{CONFIG_INVALID} for anything else (an MD5
        fingerprint, a truncated one).
    """
    match = _FINGERPRINT.fullmatch(str(text).strip())
    if match is None:
        raise BackupRemoteError(
            CONFIG_INVALID,
            "an SSH host key fingerprint is SHA256: and 43 base64 characters, as "
            "`ssh-keygen -l -E sha256 -f KEY.pub` (or `ssh-keyscan HOST | ssh-keygen "
            f"-lf -`) prints it; got {str(text)[:80]!r}")
    try:
        base64.b64decode(match.group(1) + "=", validate=True)
    except binascii.Error:
        raise BackupRemoteError(CONFIG_INVALID, "the SSH host key fingerprint is not base64"
                                ) from None
    return "SHA256:" + match.group(1)


def fingerprintOf(key: Key) -> str:
    """A public key's fingerprint as C{ssh-keygen -l -E sha256} prints it."""
    digest = base64.b64encode(hashlib.sha256(key.blob()).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


def knownHostsName(host: str, port: int) -> bytes:
    """How known_hosts names a host: C{host}, or C{[host]:port} off port 22."""
    return (host if port == 22 else f"[{host}]:{port}").encode("utf-8")


@frozen
class HostKeyPolicy:
    """
    Which SSH host keys to trust (see the module docstring).

    @ivar fingerprints: pinned C{SHA256:...} fingerprints (several while a
        server's key is rotated).
    @ivar knownHosts: an OpenSSH known_hosts file.
    @ivar acceptNew: add the key of a host C{knownHosts} does not know yet.
    @ivar insecure: trust any key (tests on a throwaway network only).
    """

    fingerprints: tuple[str, ...] = field(
        default=(), converter=lambda pins: tuple(normalizeHostKeyFingerprint(p) for p in pins))
    knownHosts: FilePath | None = None
    acceptNew: bool = False
    insecure: bool = False

    def __attrs_post_init__(self) -> None:
        if self.acceptNew and self.knownHosts is None:
            raise BackupRemoteError(
                CONFIG_INVALID, "accept-new needs a known_hosts file to record the key in")

    def check(self, host: str, port: int, key: Key) -> None:
        """
        Return if C{key} is trusted for C{host}:C{port}, else raise
        C{DESTINATION_IDENTITY_MISMATCH} with the key's fingerprint.
        """
        fingerprint = fingerprintOf(key)
        where = f"{host}:{port}"
        if self.insecure:
            log.warn(
                "INSECURE: the SSH host key of {where} is NOT checked (insecure mode); it "
                "presented {fingerprint}. Anyone between here and there can read and "
                "change the backups sent. Pin it with --host-key {fingerprint}.",
                where=where, fingerprint=fingerprint)
            return
        if fingerprint in self.fingerprints:
            return
        if self.knownHosts is not None and self._checkKnownHosts(host, port, key, fingerprint):
            return
        if self.fingerprints or self.knownHosts is not None:
            raise BackupRemoteError(
                DESTINATION_IDENTITY_MISMATCH,
                f"the SSH server at {where} presented host key {fingerprint}, which is "
                "not the pinned one: if its key was changed on purpose, pin the new "
                "fingerprint (learned from its operator, not from this message)",
                details={"fingerprint": fingerprint})
        raise BackupRemoteError(
            DESTINATION_IDENTITY_MISMATCH,
            f"no host key is pinned for the SSH server at {where} (it presented "
            f"{fingerprint}): pin its fingerprint with --host-key, give a known_hosts "
            "file, or ask explicitly for accept-new",
            details={"fingerprint": fingerprint})

    def _checkKnownHosts(self, host: str, port: int, key: Key, fingerprint: str) -> bool:
        assert self.knownHosts is not None
        name = knownHostsName(host, port)
        known = KnownHostsFile.fromPath(self.knownHosts)
        try:
            if known.hasHostKey(name, key):
                return True
        except HostKeyChanged as e:
            raise BackupRemoteError(
                DESTINATION_IDENTITY_MISMATCH,
                f"the SSH host key of {host}:{port} CHANGED: it presented {fingerprint}, "
                f"but line {e.lineno} of {self.knownHosts.path} holds another key for it. "
                "Someone may be intercepting the connection; if the key was changed on "
                "purpose, replace that line",
                details={"fingerprint": fingerprint}) from None
        if not self.acceptNew:
            return False
        if any(entry.matchesHost(name) for entry in known.iterentries()
               if hasattr(entry, "matchesHost")):
            # The host is known with another key type: not new, so not accepted.
            return False
        known.addHostKey(name, key)
        known.save()
        log.warn("accepted the new SSH host key {fingerprint} of {where} (accept-new) "
                 "and added it to {path}", fingerprint=fingerprint, where=f"{host}:{port}",
                 path=self.knownHosts.path)
        return True

    def preferredKeyTypes(self, host: str, port: int) -> list[bytes]:
        """The key types known_hosts holds for the host (to ask the server for those)."""
        if self.knownHosts is None or not self.knownHosts.exists():
            return []
        name = knownHostsName(host, port)
        return [entry.keyType for entry in KnownHostsFile.fromPath(self.knownHosts).iterentries()
                if hasattr(entry, "matchesHost") and entry.matchesHost(name)]


@frozen
class SSHCredentials:
    """A password, a private key file (OpenSSH or PEM), or both (key tried first)."""

    password: str | None = field(default=None, repr=False)
    keyFile: FilePath | None = None
    passphrase: str | None = field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.password is None and self.keyFile is None:
            raise BackupRemoteError(CONFIG_INVALID, "an SFTP destination needs a password or "
                                                    "a key file")

    def loadKey(self) -> Key | None:
        """The private key, or C{None} without a key file."""
        if self.keyFile is None:
            return None
        try:
            return Key.fromFile(self.keyFile.path, passphrase=(
                self.passphrase.encode("utf-8") if self.passphrase is not None else None))
        except EncryptedKeyError:
            raise BackupRemoteError(
                CONFIG_INVALID, f"the key file {self.keyFile.path} is encrypted: give its "
                                "passphrase") from None
        except (BadKeyError, OSError, ValueError) as e:
            raise BackupRemoteError(
                CONFIG_INVALID, f"cannot read the SSH key file {self.keyFile.path}: {e}") from None
