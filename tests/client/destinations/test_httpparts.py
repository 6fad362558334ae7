"""
The parts of the HTTP destinations that need no server: PROPFIND parsing,
the file-slice body producer and its back-pressure, the stall timer, S3's
error codes and the multipart progress count.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.task import Clock, Cooperator
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.destinations.davxml import hrefPath, parseMultistatus
from backupremote.client.destinations.httpsession import (
    SEND_LIMIT,
    FileSliceProducer,
    HTTPResponse,
    HTTPSession,
    Stall,
    widenSends,
)
from backupremote.client.destinations.s3 import _Progress
from backupremote.client.destinations.s3api import S3Bucket
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)

MULTISTATUS = b"""<?xml version="1.0" encoding="utf-8"?>
<d:multistatus xmlns:d="DAV:">
 <d:response><d:href>/dav/root/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
 <d:response><d:href>https://cloud.example/dav/root/a%2Bb.zst</d:href>
  <d:propstat><d:prop><d:resourcetype/><d:getcontentlength>42</d:getcontentlength>
   <d:getlastmodified>Sun, 29 Nov 2026 11:07:17 GMT</d:getlastmodified></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><d:quota-used-bytes/></d:prop>
   <d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>
</d:multistatus>"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>
<d:multistatus xmlns:d="DAV:"><d:response><d:href>&lol2;</d:href></d:response></d:multistatus>"""


class MultistatusTests(SynchronousTestCase):
    def test_entries(self) -> None:
        entries = parseMultistatus(MULTISTATUS, "here")
        self.assertEqual([(e.path, e.collection, e.size) for e in entries],
                         [("/dav/root", True, None), ("/dav/root/a+b.zst", False, 42)])
        modified = entries[1].modified
        assert modified is not None
        self.assertEqual(modified.isoformat(), "2026-11-29T11:07:17+00:00")

    def test_entitiesRefused(self) -> None:
        """defusedxml: an answer declaring entities is refused, not expanded."""
        error = self.assertRaises(BackupRemoteError, parseMultistatus, BOMB, "here")
        self.assertEqual(error.code, DESTINATION_REFUSED)

    def test_notMultistatus(self) -> None:
        for body in (b"<html/>", b"not xml", b""):
            error = self.assertRaises(BackupRemoteError, parseMultistatus, body, "here")
            self.assertEqual(error.code, DESTINATION_REFUSED)

    def test_hrefPath(self) -> None:
        self.assertEqual(hrefPath("http://h:1/a%20b/c/"), "/a b/c")
        self.assertEqual(hrefPath("/x/"), "/x")


class _Consumer:
    """A consumer that records writes and pauses its producer on demand."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Scheduled:
    def __init__(self, steps: list[Any], step: Any) -> None:
        self._steps = steps
        self._step = step

    def cancel(self) -> None:
        if self._step in self._steps:
            self._steps.remove(self._step)


class FileSliceProducerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.steps: list[Any] = []
        self.cooperator = Cooperator(scheduler=self.schedule,
                                     terminationPredicateFactory=lambda: lambda: True)
        self.path = self.mktemp()
        self.data = os.urandom(10 * 1024 + 7)
        with open(self.path, "wb") as f:
            f.write(self.data)

    def schedule(self, step: Any) -> Any:
        self.steps.append(step)
        return _Scheduled(self.steps, step)

    def step(self, count: int = 1) -> None:
        """Run C{count} cooperator ticks (one work unit each)."""
        for _ in range(count):
            if self.steps:
                self.steps.pop(0)()

    def produce(self, offset: int, length: int, blockSize: int = 1024) -> Any:
        seen: list[bytes] = []
        producer = FileSliceProducer(self.path, offset, length, seen.append, self.cooperator,
                                     blockSize=blockSize)
        consumer = _Consumer()
        done = producer.startProducing(consumer)
        return producer, consumer, seen, done

    def test_slice(self) -> None:
        """Exactly the slice, one block per step, each block seen before it is written."""
        producer, consumer, seen, done = self.produce(1000, 5000)
        self.assertEqual(producer.length, 5000)
        self.step()
        self.assertEqual(len(consumer.written), 1, "one block per cooperator step")
        self.step(10)
        self.assertEqual(b"".join(consumer.written), self.data[1000:6000])
        self.assertEqual(seen, consumer.written)
        self.assertIsNone(self.successResultOf(done))

    def test_pauseHoldsMemory(self) -> None:
        """Paused, nothing more is read: memory stays at the blocks already written."""
        producer, consumer, seen, done = self.produce(0, len(self.data))
        self.step()
        producer.pauseProducing()
        self.step(20)
        self.assertEqual(len(consumer.written), 1)
        producer.resumeProducing()
        self.step(20)
        self.assertEqual(b"".join(consumer.written), self.data)
        producer.pauseProducing()  # after the last block: harmless
        producer.resumeProducing()

    def test_stop(self) -> None:
        """Stopped, it reads no more and its Deferred never fires (IBodyProducer)."""
        producer, consumer, seen, done = self.produce(0, len(self.data))
        self.step()
        producer.stopProducing()
        producer.stopProducing()
        self.step(20)
        self.assertEqual(len(consumer.written), 1)
        self.assertNoResult(done)

    def test_shortFile(self) -> None:
        """A file shorter than the slice fails the body, rather than sending less."""
        producer, consumer, seen, done = self.produce(len(self.data) - 10, 100)
        self.step(5)
        self.failureResultOf(done, OSError)


class _Layer:
    """A protocol or TLS layer: something with a C{transport}."""

    def __init__(self, transport: object) -> None:
        self.transport = transport


class WidenSendsTests(SynchronousTestCase):
    def test_belowTLS(self) -> None:
        """
        The socket transport under the TLS layer sends up to SEND_LIMIT per
        write; other connections keep Twisted's default.
        """
        socket, other = FileDescriptor(), FileDescriptor()
        widenSends(_Layer(_Layer(socket)))
        self.assertEqual(socket.SEND_LIMIT, SEND_LIMIT)
        self.assertEqual(other.SEND_LIMIT, 128 * 1024)
        self.assertGreater(SEND_LIMIT, 128 * 1024)

    def test_noSocket(self) -> None:
        """A connection with no socket transport under it is left alone."""
        transport = StringTransport()
        widenSends(_Layer(transport))
        widenSends(_Layer(None))
        self.assertFalse(hasattr(transport, "SEND_LIMIT"))


class StallTests(SynchronousTestCase):
    def test_touch(self) -> None:
        clock = Clock()
        fired: list[bool] = []
        stall = Stall(clock, 10, lambda: fired.append(True))
        clock.advance(9)
        stall.touch()
        clock.advance(9)
        self.assertEqual(fired, [])
        clock.advance(1)
        self.assertEqual(fired, [True])
        self.assertTrue(stall.fired)
        stall.stop()

    def test_stop(self) -> None:
        clock = Clock()
        stall = Stall(clock, 10, lambda: None)
        stall.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


def _answer(code: int, s3code: str = "", message: str = "") -> HTTPResponse:
    body = (f"<Error><Code>{s3code}</Code><Message>{message}</Message></Error>".encode()
            if s3code else b"")
    return HTTPResponse(code, "", {"content-type": "application/xml"}, body)


class S3ErrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        session = HTTPSession(Clock(), "S3 test")
        self.bucket = S3Bucket(session, "http://127.0.0.1:1", "b", "AKEXAMPLE",
                               "the-secret-key", "us-east-1")

    def code(self, response: HTTPResponse) -> str:
        return self.bucket.error(response, "PUT x").code

    def test_codes(self) -> None:
        self.assertEqual(self.code(_answer(403, "SignatureDoesNotMatch")), DESTINATION_AUTH_FAILED)
        self.assertEqual(self.code(_answer(403, "InvalidAccessKeyId")), DESTINATION_AUTH_FAILED)
        self.assertEqual(self.code(_answer(403, "AccessDenied")), DESTINATION_REFUSED)
        self.assertEqual(self.code(_answer(404, "NoSuchKey")), DESTINATION_NOT_FOUND)
        self.assertEqual(self.code(_answer(404)), DESTINATION_NOT_FOUND)
        self.assertEqual(self.code(_answer(404, "NoSuchBucket")), DESTINATION_REFUSED)
        self.assertEqual(self.code(_answer(400, "EntityTooLarge")), DESTINATION_FULL)
        self.assertEqual(self.code(_answer(503, "SlowDown")), DESTINATION_UNREACHABLE)
        self.assertEqual(self.code(_answer(500)), DESTINATION_UNREACHABLE)

    def test_noSecretInMessages(self) -> None:
        error = self.bucket.error(_answer(403, "SignatureDoesNotMatch", "bad"), "PUT x")
        self.assertNotIn("the-secret-key", str(error))

    def test_signedURL(self) -> None:
        """Keys are percent-encoded once; the query is sorted and strictly encoded."""
        self.assertEqual(self.bucket.url("a b/c+d", [("uploadId", "x/y"), ("partNumber", "2")]),
                         "http://127.0.0.1:1/b/a%20b/c%2Bd?partNumber=2&uploadId=x%2Fy")


class MultipartProgressTests(SynchronousTestCase):
    def test_retryCountsOnce(self) -> None:
        """A part sent again after a failure does not count its bytes twice."""
        seen: list[int] = []
        progress = _Progress(seen.append)
        first = progress.sender(1)
        first(b"x" * 10)
        again = progress.sender(1)
        again(b"x" * 4)
        again(b"x" * 10)
        progress.sender(2)(b"y" * 5)
        progress.finish(19)
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(seen[-1], 19)
