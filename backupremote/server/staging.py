"""
Where the server stages backups: only ever under the OS temp folder.

``tempfile.gettempdir()/backupremote-<uid>``, mode 0700, owned by the
server's account. No client ever names a folder.
"""

from __future__ import annotations

import os
import tempfile

from twisted.python.filepath import FilePath


def stagingRoot() -> FilePath:
    """The staging root for this OS account (not created)."""
    return FilePath(tempfile.gettempdir()).child(f"backupremote-{os.getuid()}")


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
