"""
Benchmark: the SFTP destination (twisted.conch) against OpenSSH's own
``sftp`` (or ``scp``) putting the same file to the same ``sshd``.

Starts the private OpenSSH ``sshd`` of the destination tests
(``tests/client/destinations/servers.py``: 127.0.0.1, an Ed25519 host key,
``internal-sftp``, its folders in /dev/shm; it needs root, as the tests do)
and makes a file of ``--size-mib`` MiB of random bytes, then for each of
``--runs`` pairs, alternating which goes first:

  tool  ``sftp -b -`` with ``put -f SOURCE ROOT/sftp-N.bin`` (``-f``: fsync
        at the end, as ours does), or ``scp`` with ``--tool scp``; both log in
        with the same key, the host key pinned by known_hosts;
  ours  a new ``SFTPDestination`` (so the SSH connection and login are timed,
        as the tool's are), ``put`` (32 writes of 64 KiB in flight, handed the
        source's known SHA-256 as the delivery queue does, or hashing it on
        the way with ``--hash-source``; fsync@openssh.com) and ``complete``
        (posix-rename).

Both use their default algorithms (the negotiated cipher and MAC are printed:
OpenSSH's ``sftp`` picks chacha20-poly1305@openssh.com, ours AES-128-GCM by
``sshaead.py``, which conch lacks). The read-back of
ours (``readBack``: the file streamed back into a SHA-256) is timed apart
and printed after ours. Both copies are removed after each pair. Printed:
every pair, the median ratio tool-time/our-time (target at least 0.8), the
median over the quiet pairs. Exits non-zero if a run fails, not when a
target is missed.

    .venv/bin/python benchmarks/destinations_sftp.py                # 1 GiB, 5 pairs
    .venv/bin/python benchmarks/destinations_sftp.py --size-mib 256 --tool scp
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time

from _common import MB, MiB, Workspace, machineLine, runBenchmark
from _destinations import knownDigest, makeSource, runTool, timedPairs

from twisted.internet import reactor
from twisted.python.filepath import FilePath

from backupremote.client.destinations.sftp import SFTPDestination
from backupremote.client.destinations.sshkeys import HostKeyPolicy, SSHCredentials
from backupremote.client.destinations.urls import SFTPURL
from tests.client.destinations.servers import startSSH
from tests.databases.servers import HOST, which

TARGET = 0.8


async def main(workspace: Workspace, options: argparse.Namespace) -> int:
    print(machineLine())
    size = options.size_mib * MiB
    source = makeSource(workspace, options.size_mib)
    known = knownDigest(source, options.hash_source)
    server = await startSSH()
    workspace.addCleanup(server.stop)
    root = server.newFolder()
    knownHosts = workspace.path("known_hosts")
    knownHosts.write_text(server.extra["knownHosts"])
    sshOptions = ["-i", server.extra["clientKey"], "-o", f"UserKnownHostsFile={knownHosts}",
                  "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                  "-o", "IdentitiesOnly=yes", "-F", "/dev/null"]
    print(f"{size / MB:.1f} MB from {source} to sshd on {HOST}:{server.port}, {root.path}")
    print("OpenSSH " + _negotiated(sshOptions, server.user, server.port))

    def destination() -> SFTPDestination:
        return SFTPDestination(
            reactor, SFTPURL(server.user, HOST, server.port, root.path),
            SSHCredentials(keyFile=FilePath(server.extra["clientKey"])),
            HostKeyPolicy((server.extra["hostKeyFingerprint"],)))

    async def tool(run: int) -> dict:
        target = f"{root.path}/{options.tool}-{run}.bin"
        if options.tool == "scp":
            return await runTool([which("scp"), "-q", "-P", str(server.port), *sshOptions,
                                  str(source), f"{server.user}@{HOST}:{target}"])
        return await runTool([which("sftp"), "-q", "-b", "-", "-P", str(server.port),
                              *sshOptions, f"{server.user}@{HOST}"],
                             stdin=f"put -f {source} {target}\n".encode())

    async def ours(run: int) -> dict:
        sftp = destination()
        try:
            started = time.monotonic()
            upload = await sftp.put(FilePath(str(source)), f"ours-{run}.bin", known=known)
            await sftp.complete(upload)
            seconds = time.monotonic() - started
            started = time.monotonic()
            found = await sftp.readBack(upload.name)
            readBack = time.monotonic() - started
            if run == 0:
                print(f"ours: cipher {sftp.negotiated.get('out')}, "
                      f"MAC {sftp.negotiated.get('outMAC')} (ignored with GCM)")
        finally:
            await sftp.close()
        assert (found.size, found.sha256) == (upload.size, upload.sha256), found
        return {"seconds": seconds,
                "extra": f" [read-back {readBack:.2f} s, {size / readBack / MB:.0f} MB/s]"}

    async def between(run: int) -> None:
        os.unlink(f"{root.path}/{options.tool}-{run}.bin")
        os.unlink(f"{root.path}/ours-{run}.bin")

    await timedPairs(options.runs, size, options.tool, tool, ours, between, TARGET,
                     pids=[server.process.pid])
    print(machineLine())
    return 0


def _negotiated(sshOptions: list[str], user: str, port: int) -> str:
    """The cipher and MAC OpenSSH's client negotiates with this sshd (from ``ssh -v``)."""
    probe = subprocess.run([which("ssh"), "-v", "-p", str(port), *sshOptions,
                            f"{user}@{HOST}", "true"], capture_output=True, text=True)
    found = re.findall(r"kex: client->server cipher: (\S+) MAC: (\S+)", probe.stderr)
    return f"client->server cipher {found[0][0]}, MAC {found[0][1]}" if found else \
        "cipher: not found in ssh -v"


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tool", choices=("sftp", "scp"), default="sftp")
    parser.add_argument("--hash-source", action="store_true",
                        help="our put hashes the source (not handed its known SHA-256)")
    options = parser.parse_args()
    runBenchmark(lambda workspace: main(workspace, options), Workspace("dest-sftp"))


if __name__ == "__main__":
    run()
