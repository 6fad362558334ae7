"""
The processes of benchmarks/transfer.py, one role per invocation, each
printing one JSON line with its figures (the seconds are measured inside
the process, so interpreter start-up and imports are not counted, but its
peak RSS is the whole process's):

  download       the real client: connect, authenticate, ``download`` a run's
                 artifact (manifest, chunk hashes, the chunk stream, checks,
                 fsync, rename)
  plain-send     a plain Twisted TLS server: every connection gets the file
                 through ``FileSender`` over an ``ssl:`` endpoint, then is closed
  plain-receive  its receiver: writes what arrives to disk (1 MiB writes in a
                 writer thread, as the real client writes off the reactor)
                 and fsyncs at the end
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import FileSender
from twisted.python.filepath import FilePath

WRITE_SIZE = 1 << 20


def peakRss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def report(**figures: object) -> None:
    print(json.dumps(figures | {"peakRss": peakRss()}), flush=True)


# --- the real client -------------------------------------------------------------


async def download(_: object, args: argparse.Namespace) -> None:
    from backupremote.client.api import BackupRemoteClient
    from backupremote.client.config import loadClientConfig

    client = BackupRemoteClient.fromConfig(reactor, loadClientConfig(FilePath(args.config)))
    client.connection.service.startService()  # this one-shot peer owns the connection
    try:
        started, cpuStarted = time.monotonic(), cpu()
        await client.session()
        path = await client.download(args.run_id, FilePath(args.dir))
        seconds, cpuSeconds = time.monotonic() - started, cpu() - cpuStarted
    finally:
        await client.close()
    report(seconds=seconds, cpu=cpuSeconds, bytes=path.getsize(), path=path.path)


# --- the plain stream ----------------------------------------------------------


class Sender(Protocol):
    def connectionMade(self) -> None:
        handle = open(self.factory.path, "rb")  # noqa: SIM115 - closed when sent
        sent = FileSender().beginFileTransfer(handle, self.transport)

        def done(_: object) -> None:
            handle.close()
            self.transport.loseConnection()

        sent.addBoth(done)


def plainSend(args: argparse.Namespace) -> None:
    factory = Factory.forProtocol(Sender)
    factory.path = args.file
    endpoint = serverFromString(
        reactor, f"ssl:{args.port}:interface=127.0.0.1:privateKey={args.key}:certKey={args.cert}")
    endpoint.listen(factory).addErrback(lambda failure: (failure.printTraceback(),
                                                         reactor.stop()))
    reactor.run()


class Receiver(Protocol):
    """Hands 1 MiB blocks to a writer thread (bounded queue), fsyncs at the end."""

    def __init__(self, out: str, done: Deferred) -> None:
        self.descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.buffer = bytearray()
        self.count = 0
        self.done = done
        self.blocks: queue.Queue = queue.Queue(maxsize=16)
        self.writer = threading.Thread(target=self.write, daemon=True)
        self.writer.start()

    def write(self) -> None:
        while (block := self.blocks.get()) is not None:
            view = memoryview(block)
            while view:
                view = view[os.write(self.descriptor, view):]
        os.fsync(self.descriptor)
        os.close(self.descriptor)

    def dataReceived(self, data: bytes) -> None:
        self.count += len(data)
        self.buffer += data
        if len(self.buffer) >= WRITE_SIZE:
            self.blocks.put(bytes(self.buffer))
            self.buffer.clear()

    def connectionLost(self, reason: object) -> None:
        if self.buffer:
            self.blocks.put(bytes(self.buffer))
        self.blocks.put(None)
        self.done.callback(self.count)


async def plainReceive(_: object, args: argparse.Namespace) -> None:
    done: Deferred[int] = Deferred()
    factory = Factory.forProtocol(lambda: Receiver(args.out, done))
    endpoint = clientFromString(reactor, f"ssl:host=127.0.0.1:port={args.port}")
    started, cpuStarted = time.monotonic(), cpu()
    protocol = await endpoint.connect(factory)
    count = await done
    protocol.writer.join()
    report(seconds=time.monotonic() - started, cpu=cpu() - cpuStarted, bytes=count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role", required=True)
    role = roles.add_parser("download")
    role.add_argument("--config", required=True)
    role.add_argument("--run-id", required=True)
    role.add_argument("--dir", required=True)
    role = roles.add_parser("plain-send")
    role.add_argument("--port", type=int, required=True)
    role.add_argument("--file", required=True)
    role.add_argument("--key", required=True)
    role.add_argument("--cert", required=True)
    role = roles.add_parser("plain-receive")
    role.add_argument("--port", type=int, required=True)
    role.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.role == "plain-send":
        plainSend(args)
    elif args.role == "download":
        task.react(lambda r: Deferred.fromCoroutine(download(r, args)))
    else:
        task.react(lambda r: Deferred.fromCoroutine(plainReceive(r, args)))


if __name__ == "__main__":
    main()
