"""
The S3-compatible destination: the contract on C{rclone serve s3} (which
checks SigV4 signatures and Content-MD5; over HTTP with small parts so that
the contract runs our multipart upload, and over HTTPS with a private CA) and
on moto (API breadth), and its faults against real servers.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.client.destinations import parseDestinationURL, putVerified
from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.destinations.s3 import (
    MAX_PARTS,
    MiB,
    PART_SIZE,
    S3Destination,
    partSizeFor,
    planParts,
)
from backupremote.client.destinations.urls import S3URL
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests
from tests.client.destinations.httpservers import S3Server, shared, startRcloneS3


def destinationOn(case: TestCase, server: S3Server, bucket: str, prefix: str = "",
                  secret: str | None = None, **kwargs: Any) -> S3Destination:
    if server.tls is not None and "verification" not in kwargs:
        kwargs["verification"] = PeerVerification(caPem=server.tls.caPem)
    url = parseDestinationURL(server.url(bucket, prefix))
    assert isinstance(url, S3URL)
    destination = S3Destination(reactor, url, server.secretKey if secret is None else secret,
                                **kwargs)
    case.addCleanup(destination.close)
    return destination


def filesUnder(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(folder, name), root)
            for folder, _, files in os.walk(root) for name in files}


def corruptFile(path: str) -> None:
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]) if first else b"\0")


def rcloneFixture(kind: str, prefix: str, **kwargs: Any) -> Any:
    async def fixture(case: TestCase) -> DestinationFixture:
        server = shared(kind)
        bucket = server.newBucket()
        root = os.path.join(server.data, bucket, prefix)
        return DestinationFixture(
            destinationOn(case, server, bucket, prefix, **kwargs),
            corrupt=lambda name: corruptFile(os.path.join(root, name)),
            serverNames=lambda: filesUnder(root) if os.path.isdir(root) else set())
    return fixture


def motoFixture() -> Any:
    async def fixture(case: TestCase) -> DestinationFixture:
        server = shared("moto")
        bucket = server.newBucket()
        client = server.client()

        def corrupt(name: str) -> None:
            data = client.get_object(Bucket=bucket, Key=name)["Body"].read()
            client.put_object(Bucket=bucket, Key=name,
                              Body=bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\0")

        def names() -> set[str]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return {item["Key"] for page in pages for item in page.get("Contents", [])}

        return DestinationFixture(destinationOn(case, server, bucket, partSize=5 * MiB),
                                  corrupt=corrupt, serverNames=names)
    return fixture


class RcloneS3MultipartContractTests(  # type: ignore[misc]
        makeDestinationTests(rcloneFixture("rclone-s3", "backups/db1", partSize=1 * MiB))):
    """The contract on rclone serve s3 over HTTP, 1 MiB parts: files past 1 MiB go multipart."""


class RcloneS3TLSContractTests(  # type: ignore[misc]
        makeDestinationTests(rcloneFixture("rclone-s3-tls", ""))):
    """The contract on rclone serve s3 over HTTPS (private CA), at the bucket's root."""


class MotoContractTests(makeDestinationTests(motoFixture())):  # type: ignore[misc]
    """The contract on moto (it checks no signature: breadth, not the only S3 test)."""


class PartPlanTests(SynchronousTestCase):
    def test_parts(self) -> None:
        self.assertEqual([(p.number, p.offset, p.length) for p in planParts(10, 4)],
                         [(1, 0, 4), (2, 4, 4), (3, 8, 2)])
        self.assertEqual(planParts(0, 4), [])

    def test_partSize(self) -> None:
        """16 MiB parts up to 10,000 of them, then larger ones, in whole MiB."""
        self.assertEqual(partSizeFor(1), PART_SIZE)
        self.assertEqual(partSizeFor(PART_SIZE * MAX_PARTS), PART_SIZE)
        bigger = partSizeFor(PART_SIZE * MAX_PARTS + 1)
        self.assertEqual(bigger % MiB, 0)
        self.assertGreater(bigger, PART_SIZE)
        self.assertLessEqual(len(planParts(PART_SIZE * MAX_PARTS + 1, bigger)), MAX_PARTS)


class S3FaultTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.data = os.urandom(3 * MiB + 17)
        self.source = FilePath(self.mktemp())
        self.source.setContent(self.data)

    def assertUntouched(self) -> None:
        self.assertEqual(hashlib.sha256(self.source.getContent()).hexdigest(),
                         hashlib.sha256(self.data).hexdigest())

    async def assertCode(self, code: str, deferred: Any) -> BackupRemoteError:
        try:
            await deferred
        except BackupRemoteError as e:
            self.assertEqual(e.code, code, str(e))
            return e
        self.fail(f"no {code} error")

    async def test_wrongSecret(self) -> None:
        """rclone checks the signature: a wrong secret is DESTINATION_AUTH_FAILED."""
        server = shared("rclone-s3")
        bucket = server.newBucket()
        destination = destinationOn(self, server, bucket, secret="not-the-secret")
        error = await self.assertCode(DESTINATION_AUTH_FAILED, destination.testConnection())
        self.assertNotIn("not-the-secret", str(error))
        await self.assertCode(DESTINATION_AUTH_FAILED,
                              putVerified(destination, self.source, "a.bin"))
        self.assertEqual(filesUnder(os.path.join(server.data, bucket)), set())
        self.assertUntouched()

    async def test_wrongAccessKey(self) -> None:
        server = shared("rclone-s3")
        url = parseDestinationURL(
            server.url(server.newBucket()).replace(server.accessKey, "AKUNKNOWN"))
        assert isinstance(url, S3URL)
        destination = S3Destination(reactor, url, server.secretKey)
        self.addCleanup(destination.close)
        await self.assertCode(DESTINATION_AUTH_FAILED, destination.testConnection())

    async def test_noBucket(self) -> None:
        server = shared("rclone-s3")
        destination = destinationOn(self, server, "no-such-bucket")
        error = await self.assertCode(DESTINATION_REFUSED, destination.testConnection())
        self.assertIn("bucket", error.message)

    async def test_otherCA(self) -> None:
        server = shared("rclone-s3-tls")
        other = shared("nginx-tls")
        assert other.tls is not None
        destination = destinationOn(self, server, server.newBucket(),
                                    verification=PeerVerification(caPem=other.tls.caPem))
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH, destination.testConnection())
        await self.assertCode(DESTINATION_IDENTITY_MISMATCH,
                              putVerified(destination, self.source, "a.bin"))
        self.assertUntouched()

    async def test_pinned(self) -> None:
        server = shared("rclone-s3-tls")
        assert server.tls is not None
        bucket = server.newBucket()
        pinned = destinationOn(self, server, bucket,
                               verification=PeerVerification(fingerprints=[server.tls.fingerprint]))
        await putVerified(pinned, self.source, "pinned.bin")
        wrong = destinationOn(self, server, bucket,
                              verification=PeerVerification(fingerprints=["CD" * 32]))
        error = await self.assertCode(DESTINATION_IDENTITY_MISMATCH, wrong.testConnection())
        self.assertEqual(error.details["actual"], server.tls.fingerprint)

    async def test_metadata(self) -> None:
        """The final object carries our SHA-256 in its metadata (a multipart ETag is no MD5)."""
        server = shared("rclone-s3")
        bucket = server.newBucket()
        destination = destinationOn(self, server, bucket, "p", partSize=1 * MiB)
        stored = await putVerified(destination, self.source, "2026-03-03/m.zst")
        head = server.client().head_object(Bucket=bucket, Key="p/2026-03-03/m.zst")
        self.assertEqual(head["Metadata"].get("sha256") or head["Metadata"].get("Sha256"),
                         stored.sha256)
        self.assertEqual(head["ContentLength"], len(self.data))

    async def test_multipartOnMoto(self) -> None:
        """Three parts of 5 MiB (S3's smallest) on moto, then a copy done in parts."""
        server = shared("moto")
        bucket = server.newBucket()
        source = FilePath(self.mktemp())
        source.setContent(os.urandom(11 * MiB))
        destination = destinationOn(self, server, bucket, partSize=5 * MiB,
                                    copyLimit=5 * MiB)
        stored = await putVerified(destination, source, "big.zst")
        self.assertEqual(stored.sha256, hashlib.sha256(source.getContent()).hexdigest())
        client = server.client()
        body = client.get_object(Bucket=bucket, Key="big.zst")["Body"].read()
        self.assertEqual(hashlib.sha256(body).hexdigest(), stored.sha256)
        self.assertEqual(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []), [])

    async def test_staleUploadsAborted(self) -> None:
        """Our multipart uploads older than staleAfter are aborted; others are left alone."""
        server = shared("rclone-s3")
        bucket = server.newBucket()
        client = server.client()
        ours = client.create_multipart_upload(Bucket=bucket, Key="pre/.x.zst.0123456789abcdef.partial")
        theirs = client.create_multipart_upload(Bucket=bucket, Key="pre/someone-elses.bin")
        self.addCleanup(client.abort_multipart_upload, Bucket=bucket,
                        Key="pre/someone-elses.bin", UploadId=theirs["UploadId"])
        fresh = destinationOn(self, server, bucket, "pre")
        self.assertEqual(await fresh.abortStaleUploads(), 0)
        old = destinationOn(self, server, bucket, "pre", staleAfter=0.0)
        self.assertEqual(await old.abortStaleUploads(), 1)
        left = {u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket)["Uploads"]}
        self.assertEqual(left, {theirs["UploadId"]})
        self.assertNotIn(ours["UploadId"], left)

    async def test_cancelAborts(self) -> None:
        """A cancelled multipart upload is aborted and leaves no object."""
        server = shared("rclone-s3")
        bucket = server.newBucket()
        destination = destinationOn(self, server, bucket, partSize=1 * MiB, partsInFlight=1)
        pending: list[Deferred[Any]] = []

        def progress(sent: int) -> None:
            if sent > 1 * MiB and pending and not pending[0].called:
                pending[0].cancel()

        pending.append(destination.put(self.source, "c.bin", progress))
        with self.assertRaises(CancelledError):
            await pending[0]
        client = server.client()
        self.assertEqual(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []), [])
        self.assertEqual(filesUnder(os.path.join(server.data, bucket)), set())
        self.assertUntouched()

    async def test_stoppedMidUpload(self) -> None:
        """
        The server killed during a multipart upload: DESTINATION_UNREACHABLE
        (after the part's retries), nothing under the final name, the local
        file untouched.
        """
        server = startRcloneS3(self)
        bucket = server.newBucket()
        source = FilePath(self.mktemp())
        source.setContent(os.urandom(24 * MiB))
        destination = destinationOn(self, server, bucket, partSize=4 * MiB, retryDelay=0.05)

        def progress(sent: int) -> None:
            if sent >= 6 * MiB and server.daemon.running:
                server.daemon.kill()

        await self.assertCode(DESTINATION_UNREACHABLE,
                              putVerified(destination, source, "2026-01-01/big.zst", progress=progress))
        self.assertFalse(os.path.exists(os.path.join(server.data, bucket, "2026-01-01", "big.zst")))
        self.assertEqual(len(source.getContent()), 24 * MiB)


class S3RegistryTests(TestCase):
    """A stored S3 destination with --ca-file, opened by the registry, delivers."""

    timeout = 120

    async def test_build(self) -> None:
        from backupremote.client.destinations.registry import build
        from backupremote.client.destinations.stored import StoredDestination

        server = shared("rclone-s3-tls")
        assert server.tls is not None
        bucket = server.newBucket()
        stored = StoredDestination("id-1", "bucket", "s3", server.url(bucket, "db"),
                                   caFile=server.tls.caFile)
        made = build(reactor, stored, server.secretKey)
        self.assertIsInstance(made, S3Destination)
        self.addCleanup(made.close)
        self.assertNotIn(server.secretKey, made.location)
        source = FilePath(self.mktemp())
        source.setContent(b"through the registry")
        await made.testConnection()
        await putVerified(made, source, "r.bin")
        assert server.data is not None
        self.assertEqual(filesUnder(os.path.join(server.data, bucket, "db")), {"r.bin"})
