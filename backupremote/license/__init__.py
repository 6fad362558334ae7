"""Signed licences: the token format, issuer keys and the verifier (feature names: L{backupremote.protocol.features})."""

from backupremote.protocol.features import (
    ALL_FEATURES,
    DEFAULT_FEATURES,
    DESTINATION_PREFIX,
    REMOTE_CONNECTION_TEST,
    REMOTE_CONTROL,
    REMOTE_DB_CONFIG,
    REMOTE_EXECUTE,
    REMOTE_DOWNLOAD,
    destinationFeature,
)
from backupremote.license.token import (
    License,
    formatDate,
    generateIssuerKeyPair,
    loadIssuerKey,
    loadTrustedKey,
    parseToken,
    signLicense,
)
from backupremote.license.issue import issueLicense
from backupremote.license.verifier import LicenseVerifier

__all__ = [
    "ALL_FEATURES",
    "DEFAULT_FEATURES",
    "DESTINATION_PREFIX",
    "REMOTE_CONNECTION_TEST",
    "REMOTE_CONTROL",
    "REMOTE_DB_CONFIG",
    "REMOTE_EXECUTE",
    "REMOTE_DOWNLOAD",
    "License",
    "LicenseVerifier",
    "destinationFeature",
    "formatDate",
    "issueLicense",
    "generateIssuerKeyPair",
    "loadIssuerKey",
    "loadTrustedKey",
    "parseToken",
    "signLicense",
]
