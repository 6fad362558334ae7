"""
Where a server stages backups: only ever under the OS temp folder.

``tempfile.gettempdir()/backupremote-<uid>/runs-<id>/<runId>/``, mode
0700, owned by the server's account, where ``<id>`` is derived from the
server's data folder (servers sharing an account never touch each other's
runs). No client ever names a folder.

A L{StagingArea} is a value the service builds and hands to what needs it:
two servers in one process each have their own.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from attrs import frozen
from twisted.python.filepath import FilePath


def runsFolderName(dataDir: FilePath) -> str:
    """The name of the runs folder of the server whose data folder is C{dataDir}."""
    digest = hashlib.sha256(os.path.realpath(dataDir.path).encode()).hexdigest()[:12]
    return f"runs-{digest}"


@frozen
class StagingArea:
    """
    One server's staging: C{root} is the account's staging root (shared by
    the servers of one OS account), C{runs} the folder of this server's runs.
    """

    root: FilePath
    runsName: str

    @classmethod
    def forDataDir(cls, dataDir: FilePath, tempDir: FilePath | None = None) -> StagingArea:
        """
        The staging of the server whose data folder is C{dataDir}, under
        C{tempDir} (default: the OS temp folder).
        """
        temp = tempDir if tempDir is not None else FilePath(tempfile.gettempdir())
        return cls(temp.child(f"backupremote-{os.getuid()}"), runsFolderName(dataDir))

    @property
    def runs(self) -> FilePath:
        """The folder holding this server's run folders (not created)."""
        return self.root.child(self.runsName)

    def runFolder(self, runId: str) -> FilePath:
        """The staging folder of run C{runId} (not created)."""
        return self.runs.child(runId)

    def ensureRoot(self) -> FilePath:
        """
        Create the staging root (0700) if needed and check it is ours and
        private; raise C{OSError} if it cannot be used.
        """
        root = self.root
        try:
            os.mkdir(root.path, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(root.path)
        if not os.path.isdir(root.path) or os.path.islink(root.path) or info.st_uid != os.getuid():
            raise PermissionError(f"{root.basename()} is not a private folder of this account")
        os.chmod(root.path, 0o700)
        probe = root.child(f".probe-{os.getpid()}")
        probe.setContent(b"ok")
        probe.remove()
        return root

    def makeRunFolder(self, runId: str) -> FilePath:
        """Create (0700) and return the staging folder of run C{runId}."""
        self.ensureRoot()
        folder = self.runFolder(runId)
        folder.makedirs(ignoreExistingDirectory=True)
        folder.parent().chmod(0o700)
        folder.chmod(0o700)
        return folder

    def stagedBytes(self) -> int:
        """Bytes of every file under this server's run folders."""
        total = 0
        for folder, _, files in os.walk(self.runs.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total
