"""
Destinations: where the client delivers a verified artifact.

One Interface (L{IDestination}) with one contract test suite
(C{tests/client/destinations/contract.py}) that every implementation and the
in-memory twin (L{backupremote.testing.MemoryDestination}) pass; URLs parsed
into one model per type (L{parseDestinationURL}); file names with the same
rules everywhere (L{names}); and L{putVerified}, the put -> read back ->
compare -> complete sequence. See docs/destinations.md.
"""

from backupremote.client.destinations.interface import (
    STREAMED,
    DigestCounter,
    IDestination,
    IUploadJournal,
    KnownDigest,
    PendingUpload,
    Progress,
    ReadBack,
    RemoteFile,
    StoredFile,
    UploadedPart,
    UploadState,
)
from backupremote.client.destinations.names import (
    checkName,
    datedName,
    isTemporary,
    temporaryName,
)
from backupremote.client.destinations.urls import (
    TYPES,
    DestinationURL,
    FTPURL,
    LocalURL,
    RcloneURL,
    S3URL,
    SFTPURL,
    WebDAVURL,
    featureOf,
    parseDestinationURL,
)
from backupremote.client.destinations.verified import putVerified

__all__ = [
    "STREAMED", "DigestCounter", "IDestination", "IUploadJournal", "KnownDigest",
    "PendingUpload", "Progress",
    "ReadBack", "RemoteFile", "StoredFile", "UploadedPart", "UploadState", "checkName", "datedName", "isTemporary", "temporaryName",
    "TYPES", "DestinationURL", "FTPURL", "LocalURL", "RcloneURL", "S3URL", "SFTPURL",
    "WebDAVURL", "featureOf", "parseDestinationURL", "putVerified",
]
