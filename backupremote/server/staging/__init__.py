"""
Staging, in one place: where a server keeps its runs' files (L{area}), the
staged artifacts of finished runs with their leases and release
(L{artifacts}), and the janitor that expires them (L{expiry}).
"""

from backupremote.server.staging.area import StagingArea, runsFolderName

__all__ = ["StagingArea", "runsFolderName"]
