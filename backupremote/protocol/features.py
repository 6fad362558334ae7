"""
The feature names a licence can grant.

Remote commands are gated by a C{remote.*} feature; delivering a backup to a
destination type needs C{destination.<type>}.
"""

from __future__ import annotations

REMOTE_CONTROL = "remote.control"
REMOTE_DB_CONFIG = "remote.db_config"
REMOTE_CONNECTION_TEST = "remote.connection_test"
REMOTE_EXECUTE = "remote.execute"
REMOTE_DOWNLOAD = "remote.download"

DESTINATION_PREFIX = "destination."

ALL_FEATURES: tuple[str, ...] = (
    REMOTE_CONTROL,
    REMOTE_DB_CONFIG,
    REMOTE_CONNECTION_TEST,
    REMOTE_EXECUTE,
    REMOTE_DOWNLOAD,
    DESTINATION_PREFIX + "local",
    DESTINATION_PREFIX + "sftp",
    DESTINATION_PREFIX + "ftp",
    DESTINATION_PREFIX + "ftps",
    DESTINATION_PREFIX + "webdav",
    DESTINATION_PREFIX + "s3",
    DESTINATION_PREFIX + "rclone",
)

DEFAULT_FEATURES: tuple[str, ...] = ALL_FEATURES


def destinationFeature(destinationType: str) -> str:
    """The feature that allows delivering to C{destinationType} (e.g. C{"s3"})."""
    return DESTINATION_PREFIX + destinationType
