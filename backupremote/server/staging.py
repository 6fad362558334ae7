"""
Where the server stages backups: only ever under the OS temp folder.

``tempfile.gettempdir()/backupremote-<uid>/runs-<id>/<runId>/``, mode
0700, owned by the server's account, where ``<id>`` is derived from the
server's data folder (servers sharing an account never touch each other's
runs). No client ever names a folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

from twisted.python.filepath import FilePath


#: The folder of this server's runs inside the staging root: one per data
#: folder, so that servers of one OS account never sweep each other's files.
_runsName = "runs"


def runsFolderName(dataDir: FilePath) -> str:
    """The name of the runs folder of the server whose data folder is C{dataDir}."""
    digest = hashlib.sha256(os.path.realpath(dataDir.path).encode()).hexdigest()[:12]
    return f"runs-{digest}"


def useDataDir(dataDir: FilePath) -> None:
    """Name this process's runs folder after the server's data folder."""
    global _runsName
    _runsName = runsFolderName(dataDir)


def stagingRoot() -> FilePath:
    """The staging root for this OS account (not created)."""
    return FilePath(tempfile.gettempdir()).child(f"backupremote-{os.getuid()}")


def runsRoot() -> FilePath:
    """The folder holding this server's run folders (not created)."""
    return stagingRoot().child(_runsName)


def ensureStagingRoot() -> FilePath:
    """
    Create the staging root (0700) if needed and check it is ours and
    private; raise C{OSError} if it cannot be used.
    """
    root = stagingRoot()
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
