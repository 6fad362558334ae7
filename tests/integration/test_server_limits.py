"""
The server daemon under an unauthenticated attacker, from the outside:
one box that never ends, and a thousand idle connections.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
import subprocess
import time
from typing import Any

from tests.integration.test_daemons import ProgramTestCase, program

VALUE = b"v" * 65535
GIB = 1 << 30


def pair(key: bytes, value: bytes) -> bytes:
    return len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value


def memoryOf(pid: int, field: str) -> int:
    """A /proc/PID/status memory figure (C{VmRSS}, C{VmHWM}) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


class UnauthenticatedFloodTests(ProgramTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.port, _ = self.setUpServerAndClient()
        self.server = self.daemon("backupremote-server", "--config", "server/server.toml")
        self.waitFor(self.capabilities, "the server to answer")

    def capabilities(self) -> Any:
        done = subprocess.run(
            [program("backupremote"), "--config", "client/client.toml", "capabilities", "--json"],
            cwd=self.folder.path, capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def test_unterminatedBoxIsDroppedWithBoundedMemory(self) -> None:
        """Up to 1 GiB of one box before auth: dropped early, peak RSS grows < 16 MB."""
        before = memoryOf(self.server.pid, "VmHWM")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sent = 0
        with context.wrap_socket(socket.create_connection(("127.0.0.1", self.port))) as tls:
            try:
                tls.sendall(pair(b"_command", b"auth") + pair(b"_ask", b"1"))
                index = 0
                while sent < GIB:
                    tls.sendall(pair(b"k%d" % index, VALUE))
                    sent += len(VALUE)
                    index += 1
            except OSError:
                pass  # the server dropped us
        grown = memoryOf(self.server.pid, "VmHWM") - before
        self.assertLess(sent, GIB, "the connection was never dropped")
        self.assertLess(grown, 16 << 20, f"peak RSS grew by {grown} bytes")
        self.assertIsNotNone(self.capabilities())

    def test_thousandIdleConnectionsLeaveAClientServed(self) -> None:
        """1,000 idle connections: the server keeps at most its cap of them and serves a client."""
        idle = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(1000)]
        self.addCleanup(lambda: [s.close() for s in idle])
        started = time.monotonic()
        answer = self.capabilities()
        elapsed = time.monotonic() - started
        self.assertIsNotNone(answer, "the client was not served")

        def closedByServer() -> int:
            readable, _, _ = select.select(idle, [], [], 0.5)
            closed = 0
            for s in readable:
                try:
                    closed += s.recv(1, socket.MSG_PEEK) == b""
                except ConnectionResetError:
                    closed += 1
            return closed

        # the default cap per address is 16: every older idle connection was dropped
        self.waitFor(lambda: closedByServer() >= 1000 - 16, "the idle connections to be dropped")
        print(f"client served in {elapsed:.3f} s with 1000 idle connections open")
