"""
Post-scripts: programs the server's operator put in an allowlist folder.

A client only ever names one; the server finds it as a plain executable
file directly in ``post_scripts_dir`` and runs it with an argv of its path
alone, the run's ids and the artifact's path in its environment, and a
timeout.
"""

from __future__ import annotations

import os
import re

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.childprocess import baseEnvironment, runProcess
from backupremote.protocol.errors import SCRIPT_FAILED, SCRIPT_NOT_ALLOWED, BackupRemoteError
from backupremote.reactors import IChildReactor

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OUTPUT_KEPT = 16 * 1024


@frozen
class ScriptOutcome:
    ok: bool
    output: str


class PostScripts:
    """The allowlist folder and how its scripts run."""

    def __init__(self, reactor: IChildReactor, folder: FilePath | None, timeout: float) -> None:
        self._reactor = reactor
        self.folder = folder
        self.timeout = timeout

    def find(self, name: str) -> FilePath:
        """The script called C{name}, or C{SCRIPT_NOT_ALLOWED}."""
        if self.folder is None:
            raise BackupRemoteError(SCRIPT_NOT_ALLOWED, "this server allows no post-scripts")
        if not NAME.fullmatch(name):
            raise BackupRemoteError(SCRIPT_NOT_ALLOWED, "a post-script is named, not a path")
        script = self.folder.child(name)
        real = os.path.realpath(script.path)
        if (os.path.dirname(real) != os.path.realpath(self.folder.path)
                or not os.path.isfile(real) or not os.access(real, os.X_OK)):
            raise BackupRemoteError(
                SCRIPT_NOT_ALLOWED, f"no executable post-script {name!r} in the allowlist")
        return FilePath(real)

    async def run(self, name: str, environment: dict[str, str]) -> ScriptOutcome:
        """Run C{name}; its output (stdout, then stderr) is kept, cut to 16 KiB."""
        script = self.find(name)
        done = await runProcess(self._reactor, [script.path],
                                baseEnvironment() | environment, timeout=self.timeout)
        output = (done.stdout.decode("utf-8", "replace") + done.stderr)[-OUTPUT_KEPT:]
        if done.timedOut:
            output += f"\n[timed out after {self.timeout:g} s]"
        return ScriptOutcome(done.ok, output)


def scriptFailure(name: str, outcome: ScriptOutcome) -> BackupRemoteError:
    last = outcome.output.strip().splitlines()[-1:] or ["no output"]
    return BackupRemoteError(SCRIPT_FAILED, f"post-script {name!r} failed: {last[0][:300]}")
