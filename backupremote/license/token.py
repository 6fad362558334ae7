"""
Licence tokens: the signed C{brl1.} format, and the issuer key files.

A token is C{"brl1." + b64url(payload) + "." + b64url(signature)}, unpadded,
where the payload is compact JSON with sorted keys and the signature is
Ed25519 over the payload bytes.  Parsing is strict and never verifies the
signature; L{backupremote.license.verifier} does that.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime, timezone
from typing import Any

from attrs import field, frozen
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from twisted.python.filepath import FilePath

from backupremote.filewriting import writeNewFile
from backupremote.private import makePrivateFolder
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    LICENSE_MALFORMED,
    BackupRemoteError,
)

TOKEN_PREFIX = "brl1"
MAX_TOKEN_LENGTH = 16 * 1024
SIGNATURE_LENGTH = 64
ISSUER_KEY_NAME = "issuer.key"
ISSUER_PUB_NAME = "issuer.pub"

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_UTC_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z"
)
_TEXT_KEYS = ("licenseId", "licensee", "clientId")
_DATE_KEYS = ("notBefore", "expiresAt")
_PAYLOAD_KEYS = frozenset((*_TEXT_KEYS, "features", *_DATE_KEYS))


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError("licence dates must be timezone-aware datetimes")
    return value.astimezone(timezone.utc)


@frozen
class License:
    """The claims of a licence; dates are timezone-aware and kept in UTC."""

    licenseId: str
    licensee: str
    clientId: str
    features: tuple[str, ...] = field(converter=tuple)
    notBefore: datetime = field(converter=_utc)
    expiresAt: datetime = field(converter=_utc)


def _malformed(why: str) -> BackupRemoteError:
    return BackupRemoteError(
        LICENSE_MALFORMED,
        f"the licence token is unreadable ({why}); reissue it with "
        "`backupremote license issue`",
    )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Decode canonical unpadded base64url, so one token has one spelling."""
    if not _B64URL.fullmatch(text):
        raise _malformed(f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not base64url") from None
    if _b64encode(data) != text:
        raise _malformed(f"{what} is not canonical base64url")
    return data


def formatDate(value: datetime) -> str:
    """C{value} as the ISO 8601 UTC text used in tokens (C{...Z})."""
    naive = value.astimezone(timezone.utc).replace(tzinfo=None)
    timespec = "microseconds" if naive.microsecond else "seconds"
    return naive.isoformat(timespec=timespec) + "Z"


def _parseDate(key: str, value: Any) -> datetime:
    if not isinstance(value, str) or not _UTC_TEXT.fullmatch(value):
        raise _malformed(f"{key} is not an ISO 8601 UTC date ending in Z")
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
    except ValueError:
        raise _malformed(f"{key} is not a valid date") from None


def claimsOf(license: License) -> dict[str, Any]:
    """The licence's claims as the JSON object that is signed."""
    return {
        "licenseId": license.licenseId,
        "licensee": license.licensee,
        "clientId": license.clientId,
        "features": list(license.features),
        "notBefore": formatDate(license.notBefore),
        "expiresAt": formatDate(license.expiresAt),
    }


def _payloadBytes(license: License) -> bytes:
    return json.dumps(claimsOf(license), sort_keys=True, separators=(",", ":")).encode("ascii")


def _rejectDuplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def _licenseFromPayload(payload: bytes) -> License:
    try:
        body = json.loads(payload.decode("utf-8"), object_pairs_hook=_rejectDuplicates)
    except (ValueError, RecursionError):
        raise _malformed("payload is not JSON") from None
    if not isinstance(body, dict) or set(body) != _PAYLOAD_KEYS:
        raise _malformed(f"payload must have exactly the keys {sorted(_PAYLOAD_KEYS)}")
    for key in _TEXT_KEYS:
        if not isinstance(body[key], str):
            raise _malformed(f"{key} is not a string")
    features = body["features"]
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise _malformed("features is not a list of strings")
    return License(
        licenseId=body["licenseId"],
        licensee=body["licensee"],
        clientId=body["clientId"],
        features=tuple(features),
        notBefore=_parseDate("notBefore", body["notBefore"]),
        expiresAt=_parseDate("expiresAt", body["expiresAt"]),
    )


def signLicense(license: License, issuerKey: Ed25519PrivateKey) -> str:
    """Sign C{license} with the issuer's key and return the token."""
    payload = _payloadBytes(license)
    token = ".".join(
        (TOKEN_PREFIX, _b64encode(payload), _b64encode(issuerKey.sign(payload)))
    )
    if len(token) > MAX_TOKEN_LENGTH:
        raise BackupRemoteError(
            CONFIG_INVALID,
            f"the licence would be longer than {MAX_TOKEN_LENGTH} characters; "
            "use shorter names or fewer features",
        )
    return token


def parseToken(token: str) -> tuple[License, bytes, bytes]:
    """
    Read a token, without checking its signature.

    @return: the licence, the signed payload bytes and the signature.
    @raise BackupRemoteError: C{LICENSE_MALFORMED} if it cannot be read.
    """
    if not isinstance(token, str):
        raise _malformed("not text")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise _malformed(f"longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise _malformed(f"not a {TOKEN_PREFIX}. backupremote licence")
    payload = _b64decode(parts[1], "payload")
    signature = _b64decode(parts[2], "signature")
    if len(signature) != SIGNATURE_LENGTH:
        raise _malformed("signature has the wrong length")
    return _licenseFromPayload(payload), payload, signature


def _asFilePath(path: FilePath[str] | str) -> FilePath[str]:
    return path if isinstance(path, FilePath) else FilePath(path)


def _alreadyExists(path: FilePath[str]) -> BackupRemoteError:
    return BackupRemoteError(
        CONFIG_INVALID,
        f"{path.basename()} already exists; remove it or choose another directory",
    )


def generateIssuerKeyPair(
    directory: FilePath[str] | str,
) -> tuple[FilePath[str], FilePath[str]]:
    """
    Write a new issuer key pair as C{issuer.key} and C{issuer.pub} (both
    0600) in C{directory}, creating it (0700) if needed.

    @return: the paths of the private and the public key.
    @raise BackupRemoteError: C{CONFIG_INVALID} if either file exists.
    """
    directory = _asFilePath(directory)
    keyPath = directory.child(ISSUER_KEY_NAME)
    pubPath = directory.child(ISSUER_PUB_NAME)
    try:
        makePrivateFolder(directory)
    except OSError as e:
        raise BackupRemoteError(
            CONFIG_INVALID, f"cannot create the key directory: {e.strerror}"
        ) from None
    for existing in (keyPath, pubPath):
        if existing.exists():
            raise _alreadyExists(existing)
    key = Ed25519PrivateKey.generate()
    writeNewFile(
        keyPath,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    try:
        writeNewFile(
            pubPath,
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            ),
        )
    except BaseException:
        keyPath.remove()
        raise
    return keyPath, pubPath


def _readKeyFile(path: FilePath[str], what: str) -> bytes:
    try:
        return path.getContent()
    except OSError:
        raise BackupRemoteError(
            CONFIG_INVALID, f"cannot read the {what} file {path.basename()}"
        ) from None


def _notEd25519(path: FilePath[str], what: str) -> BackupRemoteError:
    return BackupRemoteError(
        CONFIG_INVALID,
        f"the {what} file {path.basename()} is not an unencrypted PEM Ed25519 key",
    )


def loadIssuerKey(path: FilePath[str] | str) -> Ed25519PrivateKey:
    """Load the issuer's private key from a PEM PKCS8 file."""
    path = _asFilePath(path)
    data = _readKeyFile(path, "issuer key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise _notEd25519(path, "issuer key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise _notEd25519(path, "issuer key")
    return key


def loadTrustedKey(path: FilePath[str] | str) -> Ed25519PublicKey:
    """Load a trusted issuer's public key from a PEM SubjectPublicKeyInfo file."""
    path = _asFilePath(path)
    data = _readKeyFile(path, "trusted issuer key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise _notEd25519(path, "trusted issuer key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise _notEd25519(path, "trusted issuer key")
    return key
