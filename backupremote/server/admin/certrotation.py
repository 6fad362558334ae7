"""
The server's certificate: its fingerprint, and rotating it without cutting
clients off.

A rotation has three states, all beside the configured key and certificate
(C{[tls] key} and C{cert} in server.toml):

- C{server.key} / C{server.crt}: the current pair, the one the server offers;
- C{server.key.pending} / C{server.crt.pending}: a new pair, made by
  L{stageNewCertificate} (or copied in by L{stageCertificate}), which the
  server never offers: clients pin it next to the current one;
- C{server.key.previous} / C{server.crt.previous}: the pair
  L{activatePending} replaced, kept as a backup.

L{activatePending} renames the pending pair over the current one (key, then
certificate, each an atomic rename); a running server offers it once it is
sent SIGHUP or restarted. If it is interrupted between the two renames, run
it again: it sees the key already moved and finishes.
"""

from __future__ import annotations

import datetime
import os
from typing import Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.python.filepath import FilePath

from backupremote.configfile import configError
from backupremote.filewriting import fsyncFolder, replaceFile, writeNewFile, writePrivateFile
from backupremote.server.config import ServerConfig
from backupremote.tls.certificates import (
    LOOPBACK_NAMES,
    checkKeyMatches,
    fingerprintOfDer,
    generateServerCertificate,
    loadCertificates,
    loadPrivateKey,
)

PENDING = ".pending"
PREVIOUS = ".previous"


@frozen
class CertificateInfo:
    """What an operator needs to know about one certificate."""

    fingerprint: str
    #: the names it carries (subject alternative names, else its common name)
    names: list[str]
    notBefore: str
    notAfter: str
    #: whether it signed itself (one that C{server init} or C{rotate-cert} made)
    selfSigned: bool


@frozen
class CertificateFiles:
    """A key file and its certificate file."""

    key: FilePath
    cert: FilePath

    def sibling(self, suffix: str) -> CertificateFiles:
        return CertificateFiles(self.key.siblingExtension(suffix),
                                self.cert.siblingExtension(suffix))

    def exists(self) -> bool:
        return self.key.exists() or self.cert.exists()


@frozen
class CertificateState:
    """The current certificate, and the pending and previous ones if any."""

    current: CertificateInfo
    pending: CertificateInfo | None
    previous: CertificateInfo | None

    @property
    def fingerprints(self) -> list[str]:
        """What clients pin: the current certificate's, and the pending one's."""
        return [self.current.fingerprint] + (
            [self.pending.fingerprint] if self.pending else [])


def currentFiles(config: ServerConfig) -> CertificateFiles:
    return CertificateFiles(config.tlsKey, config.tlsCert)


def _read(path: FilePath, what: str) -> bytes:
    try:
        return path.getContent()
    except OSError as e:
        raise configError(f"cannot read the {what} {path.path}: {e.strerror}") from None


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [a.value for a in cert.subject if a.oid == x509.NameOID.COMMON_NAME]
    return [str(name.value) for name in san
            if isinstance(name, (x509.DNSName, x509.IPAddress))]


def describeCertificate(certPem: bytes, what: str = "certificate") -> CertificateInfo:
    """The fingerprint, names and validity of the first certificate of C{certPem}."""
    cert = loadCertificates(certPem, what)[0]
    return CertificateInfo(
        fingerprint=fingerprintOfDer(cert.public_bytes(Encoding.DER)),
        names=_names(cert),
        notBefore=cert.not_valid_before_utc.isoformat(),
        notAfter=cert.not_valid_after_utc.isoformat(),
        selfSigned=cert.issuer == cert.subject,
    )


def _describeFiles(files: CertificateFiles, what: str) -> CertificateInfo | None:
    if not files.cert.exists():
        return None
    return describeCertificate(_read(files.cert, what), what)


def certificateState(config: ServerConfig) -> CertificateState:
    """
    The current certificate (C{[tls] cert}), and the pending and previous
    ones beside it.
    """
    files = currentFiles(config)
    return CertificateState(
        current=describeCertificate(_read(files.cert, "TLS certificate"), "TLS certificate"),
        pending=_describeFiles(files.sibling(PENDING), "pending TLS certificate"),
        previous=_describeFiles(files.sibling(PREVIOUS), "previous TLS certificate"),
    )


def _refuseIfPending(files: CertificateFiles) -> None:
    pending = files.sibling(PENDING)
    if pending.exists():
        info = _describeFiles(pending, "pending TLS certificate")
        which = f" ({info.fingerprint})" if info else ""
        raise configError(
            f"a pending certificate exists already{which}: activate it with "
            "`backupremote server rotate-cert --activate` or discard it with `--discard`"
        )


def _matchOwner(new: FilePath, like: FilePath) -> None:
    """Give C{new} the owner and group of C{like} (when run as root for the daemon's account)."""
    try:
        status = os.stat(like.path)
        if (status.st_uid, status.st_gid) != (os.getuid(), os.getgid()):
            os.chown(new.path, status.st_uid, status.st_gid)
    except OSError:
        pass


def _stage(files: CertificateFiles, keyPem: bytes, certPem: bytes) -> CertificateInfo:
    pending = files.sibling(PENDING)
    info = describeCertificate(certPem, "new certificate")
    writePrivateFile(pending.key, keyPem)
    try:
        writeNewFile(pending.cert, certPem)
    except BaseException:
        pending.key.remove()
        raise
    for new, like in ((pending.key, files.key), (pending.cert, files.cert)):
        _matchOwner(new, like)
    fsyncFolder(pending.cert.parent())
    return info


def stageNewCertificate(
    config: ServerConfig, hostnames: Sequence[str] = (), days: int = 825
) -> CertificateInfo:
    """
    Make a new key and self-signed certificate as the pending pair. The
    names are C{hostnames}, or by default those of the current certificate.

    @raise BackupRemoteError: C{CONFIG_INVALID} if a pending pair exists,
        or if the current certificate was issued by a CA (stage the CA's new
        one with L{stageCertificate}).
    """
    files = currentFiles(config)
    _refuseIfPending(files)
    current = describeCertificate(_read(files.cert, "TLS certificate"), "TLS certificate")
    if not current.selfSigned:
        raise configError(
            "the current certificate was issued by a CA, so clients may check it "
            "against that CA: have the CA issue the new one and stage it with "
            "`backupremote server rotate-cert --key KEYFILE --cert CERTFILE`"
        )
    if days < 1:
        raise configError("--days must be at least 1")
    names = list(hostnames) or [n for n in current.names if n not in LOOPBACK_NAMES]
    keyPem, certPem = generateServerCertificate(names, days=days)
    return _stage(files, keyPem, certPem)


def stageCertificate(config: ServerConfig, keyPem: bytes, certPem: bytes) -> CertificateInfo:
    """
    Copy a key and certificate made elsewhere (by a CA) in as the pending pair.

    @raise BackupRemoteError: C{CONFIG_INVALID} if a pending pair exists,
        or the key is not the certificate's.
    """
    files = currentFiles(config)
    _refuseIfPending(files)
    checkKeyMatches(loadPrivateKey(keyPem, "new key"),
                    loadCertificates(certPem, "new certificate")[0], "new")
    return _stage(files, keyPem, certPem)


def discardPending(config: ServerConfig) -> CertificateInfo:
    """Remove the pending pair; what it was."""
    pending = currentFiles(config).sibling(PENDING)
    info = _describeFiles(pending, "pending TLS certificate")
    if info is None:
        raise configError("there is no pending certificate to discard")
    for path in (pending.key, pending.cert):
        if path.exists():
            path.remove()
    return info


def activatePending(config: ServerConfig) -> tuple[CertificateInfo, CertificateInfo]:
    """
    Make the pending pair current, keeping the current one as the previous
    pair; C{(new current, previous)}.

    @raise BackupRemoteError: C{CONFIG_INVALID} if there is no pending pair,
        or it is not usable (the key does not match, or it has expired);
        nothing is changed then.
    """
    files = currentFiles(config)
    pending = files.sibling(PENDING)
    previous = files.sibling(PREVIOUS)
    if not pending.cert.exists():
        raise configError(
            "there is no pending certificate to activate; make one with "
            "`backupremote server rotate-cert --config ...`"
        )
    certPem = _read(pending.cert, "pending TLS certificate")
    info = describeCertificate(certPem, "pending TLS certificate")
    if datetime.datetime.fromisoformat(info.notAfter) <= datetime.datetime.now(
            datetime.timezone.utc):
        raise configError(f"the pending certificate expired on {info.notAfter}; "
                          "discard it and make a new one")
    cert = loadCertificates(certPem, "pending TLS certificate")[0]
    if pending.key.exists():
        checkKeyMatches(loadPrivateKey(_read(pending.key, "pending TLS key"), "pending TLS key"),
                        cert, "pending TLS")
        currentKeyPem = _read(files.key, "TLS key")
        currentCertPem = _read(files.cert, "TLS certificate")
        replaceFile(previous.key, currentKeyPem, 0o600)
        replaceFile(previous.cert, currentCertPem, 0o644)
        for new, like in ((previous.key, files.key), (previous.cert, files.cert)):
            _matchOwner(new, like)
        os.replace(pending.key.path, files.key.path)
    else:
        # an earlier activation moved the key and stopped: finish it
        checkKeyMatches(loadPrivateKey(_read(files.key, "TLS key"), "TLS key"), cert,
                        "pending TLS")
    os.replace(pending.cert.path, files.cert.path)
    for folder in {files.key.parent().path, files.cert.parent().path}:
        fsyncFolder(FilePath(folder))
    previousInfo = _describeFiles(previous, "previous TLS certificate")
    assert previousInfo is not None
    return info, previousInfo
