"""twistd dropin: ``backupremote-server`` and ``backupremote-client``."""

from twisted.application.service import ServiceMaker

backupremoteServer = ServiceMaker(
    "backupremote server",
    "backupremote.server.tap",
    "Serve database backups over AMP/TLS, on the client's command.",
    "backupremote-server",
)

backupremoteClient = ServiceMaker(
    "backupremote client",
    "backupremote.client.tap",
    "Schedule backups, command a backupremote server and deliver the artifacts.",
    "backupremote-client",
)
