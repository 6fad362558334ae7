"""
Downloading a run's artifact: resumable, verified chunk by chunk and whole,
renamed into place only then (see L{backupremote.client.download.fetch}).
"""

from backupremote.client.download.fetch import (
    DownloadProgress,
    FileDownload,
    ProgressHandler,
    downloadRun,
    targetName,
)
from backupremote.client.download.partfile import fileSha256

__all__ = ["DownloadProgress", "FileDownload", "ProgressHandler", "downloadRun",
           "fileSha256", "targetName"]
