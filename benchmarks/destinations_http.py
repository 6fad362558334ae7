"""
Benchmark: uploads to WebDAV and S3-compatible destinations against the
usual command-line tools, to the same real servers on 127.0.0.1.

Makes a file of ``--size-mib`` MiB of random bytes (in /dev/shm when it has
room), starts nginx with its DAV modules over HTTPS and ``rclone serve s3``
over HTTPS (both with a private CA; see tests/client/destinations/
httpservers.py), then for each of ``--runs`` pairs, alternating which goes
first:

  webdav  ``curl -T`` of the file against WebDAVDestination.put (treq);
  s3      ``rclone copyto`` (rclone's own multipart S3 client) against
          S3Destination.put (16 MiB parts, 3 in flight, each part hashed
          before it is sent and signed with its SHA-256).

Our puts are handed the file's size and SHA-256 (computed before any
timing), as the delivery queue hands them the artifact's, so they do not
hash the whole file again; ``--hash-source`` makes them hash it.

Both copies are removed after each pair (the servers keep their files in
/dev/shm). Then four uploads at once (two of each) with the peak RSS of this process
(VmHWM, reset before). Printed: every pair, the median ratio ours/tool
(target at least 0.8) and the peak RSS (target under 120 MB). Everything is
removed at exit. Exits non-zero if a run fails, not when a target is missed.

    .venv/bin/python benchmarks/destinations_http.py              # 1 GiB, 3 pairs
    .venv/bin/python benchmarks/destinations_http.py --size-mib 256 --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults  # noqa: E402
from twisted.python.filepath import FilePath  # noqa: E402

from _destinations import knownDigest  # noqa: E402
from backupremote.client.destinations import KnownDigest, parseDestinationURL  # noqa: E402
from backupremote.client.destinations.httptls import PeerVerification  # noqa: E402
from backupremote.client.destinations.s3 import S3Destination  # noqa: E402
from backupremote.client.destinations.webdav import WebDAVDestination  # noqa: E402
from tests.client.destinations.httpservers import (  # noqa: E402
    shared,
    which,
)

MB = 1_000_000


def peakRSS() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def resetPeak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def makeFile(size: int) -> FilePath:
    folder = "/dev/shm" if os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize > 3 * size else None
    handle, name = tempfile.mkstemp(prefix="br-bench-", dir=folder)
    with os.fdopen(handle, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(size % (1 << 20)))
    return FilePath(name)


def timed(tool: list[str], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    subprocess.run(tool, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


async def main(args: argparse.Namespace) -> int:
    size = args.size_mib << 20
    source = makeFile(size)
    known = knownDigest(Path(source.path), args.hash_source)
    try:
        dav = shared("nginx-tls")
        s3 = shared("rclone-s3-tls")
        folder = dav.newFolder()
        bucket = s3.newBucket()
        webdav = WebDAVDestination(reactor, parseDestinationURL(dav.url(folder)), dav.password,
                                   PeerVerification(dav.tls.caPem))
        bucketDest = S3Destination(reactor, parseDestinationURL(s3.url(bucket)), s3.secretKey,
                                   PeerVerification(s3.tls.caPem))
        rcloneEnv = dict(os.environ, RCLONE_CONFIG_B_TYPE="s3", RCLONE_CONFIG_B_PROVIDER="Rclone",
                         RCLONE_CONFIG_B_ENDPOINT=s3.endpoint,
                         RCLONE_CONFIG_B_ACCESS_KEY_ID=s3.accessKey,
                         RCLONE_CONFIG_B_SECRET_ACCESS_KEY=s3.secretKey,
                         RCLONE_CA_CERT=s3.tls.caFile, RCLONE_CONFIG="/dev/null")
        ratios: dict[str, list[float]] = {"webdav": [], "s3": []}
        for run in range(args.runs):
            for kind in ("webdav", "s3"):
                if kind == "webdav":
                    tool = ["curl", "-sS", "--fail", "--cacert", dav.tls.caFile, "-u",
                            f"{dav.user}:{dav.password}", "-T", source.path,
                            f"https://127.0.0.1:{dav.daemon.port}/{folder}/curl-{run}.bin"]
                    env = None
                    ours = webdav
                    toolName = "curl -T"
                else:
                    tool = [which("rclone"), "copyto", source.path, f"B:{bucket}/rclone-{run}.bin"]
                    env = rcloneEnv
                    ours = bucketDest
                    toolName = "rclone copyto"
                order = ["tool", "ours"] if run % 2 == 0 else ["ours", "tool"]
                took: dict[str, float] = {}
                for side in order:
                    if side == "tool":
                        took["tool"] = timed(tool, env)
                    else:
                        start = time.monotonic()
                        await ours.put(source, f"ours-{run}.bin", known=known)
                        took["ours"] = time.monotonic() - start
                # untimed: keep the servers' folders (in /dev/shm) from filling up at 1 GiB
                toolCopy = f"curl-{run}.bin" if kind == "webdav" else f"rclone-{run}.bin"
                for name in (toolCopy, f"ours-{run}.bin"):
                    await ours.delete(name)
                ratio = took["tool"] / took["ours"]
                ratios[kind].append(ratio)
                print(f"pair {run + 1} {kind:6} ({order[0]} first): {toolName} "
                      f"{size / took['tool'] / MB:7.1f} MB/s, ours {size / took['ours'] / MB:7.1f} MB/s,"
                      f" ratio {ratio:.2f}", flush=True)
        for kind, values in ratios.items():
            median = statistics.median(values)
            print(f"{kind}: median ratio ours/tool {median:.2f} "
                  f"({'target met' if median >= 0.8 else 'target missed'}: at least 0.8)")
        resetPeak()
        before = peakRSS()
        start = time.monotonic()
        await gatherResults([Deferred.fromCoroutine(_put(d, source, f"parallel-{i}.bin", known))
                             for i, d in enumerate([webdav, bucketDest, webdav, bucketDest])])
        took = time.monotonic() - start
        peak = peakRSS()
        print(f"4 uploads at once: {4 * size / took / MB:.1f} MB/s in all, peak RSS "
              f"{peak / MB:.0f} MB (at start {before / MB:.0f} MB; "
              f"{'target met' if peak < 120 * MB else 'target missed'}: under 120 MB)")
        await webdav.close()
        await bucketDest.close()
        return 0
    finally:
        source.remove()


async def _put(destination: object, source: FilePath, name: str,
               known: KnownDigest | None) -> None:
    await destination.put(source, name, known=known)  # type: ignore[attr-defined]


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hash-source", action="store_true",
                        help="our puts hash the source (not handed its known SHA-256)")
    args = parser.parse_args()
    outcome: list[int] = []

    def done(result: object) -> None:
        outcome.append(result if isinstance(result, int) else 1)
        if not isinstance(result, int):
            result.printTraceback()  # type: ignore[attr-defined]
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main(args)).addBoth(done))
    reactor.run()
    sys.exit(outcome[0] if outcome else 1)


if __name__ == "__main__":
    run()
