"""
The few S3 API calls an S3-compatible destination needs, signed with
botocore's SigV4 signer and sent with L{HTTPSession} (C{treq}).

Path-style URLs (C{endpoint/bucket/key}), which every S3-compatible server
accepts. Every request signs its payload's real SHA-256 (the server checks
it) and every upload sends a C{Content-MD5} too, computed beforehand from
the local file: a byte changed on the way is refused by the server. Answers
are parsed with C{defusedxml}; S3 error codes become registered errors.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from urllib.parse import quote
from xml.etree.ElementTree import Element

import defusedxml.ElementTree
from attrs import frozen
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from defusedxml import DefusedXmlException
from twisted.logger import Logger
from twisted.web.iweb import IBodyProducer

from backupremote.client.destinations.httpsession import HTTPResponse, HTTPSession, Sink
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    DESTINATION_VERIFY_FAILED,
    BackupRemoteError,
)

log = Logger()

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: The metadata key of our own SHA-256 of an object (C{x-amz-meta-sha256}).
SHA256_METADATA = "sha256"

_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
               "ExpiredToken", "AuthorizationHeaderMalformed", "InvalidSecurity"}
_FULL_CODES = {"EntityTooLarge", "QuotaExceeded", "XMinioStorageFull", "InsufficientStorage"}
_BUSY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
_MISSING_CODES = {"NoSuchKey", "NoSuchUpload", "NotFound"}


def md5Base64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(element: Element, name: str) -> Element | None:
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _text(element: Element, name: str) -> str:
    child = _child(element, name)
    return (child.text or "") if child is not None else ""


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def parseXML(body: bytes, location: str) -> Element:
    try:
        return defusedxml.ElementTree.fromstring(body)
    except (DefusedXmlException, SyntaxError, ValueError) as e:
        raise BackupRemoteError(
            DESTINATION_REFUSED, f"{location} answered with XML that cannot be read: {e}") from None


def _time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


@frozen
class S3Object:
    key: str
    size: int
    modified: datetime | None


@frozen
class S3Upload:
    """A multipart upload in progress."""

    key: str
    uploadId: str
    initiated: datetime | None


@frozen
class S3Part:
    """A part of a multipart upload, as the server lists it."""

    number: int
    size: int
    etag: str


def sameETag(one: str, other: str) -> bool:
    """Whether two ETags are the same (quotes and case aside)."""
    return one.strip().strip('"').lower() == other.strip().strip('"').lower()


class _PayloadSigner(S3SigV4Auth):
    """SigV4 for S3 with the payload's SHA-256 computed by us (bodies stream)."""

    def payload(self, request: AWSRequest) -> str:
        return request.context["payloadSha256"]


class S3Bucket:
    """
    One bucket on one S3-compatible server.

    @ivar location: for messages: the endpoint and bucket, no secret.
    """

    def __init__(self, session: HTTPSession, endpoint: str, bucket: str,
                 accessKey: str, secretKey: str, region: str) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.location = session.location
        self._etagsNoted = False
        self._signer = _PayloadSigner(Credentials(accessKey, secretKey), "s3", region)

    def url(self, key: str = "", query: Sequence[tuple[str, str]] = ()) -> str:
        path = "/" + quote(self.bucket, safe="") + "/" + quote(key, safe="/-_.~")
        if query:
            pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query)
            path += "?" + "&".join(f"{k}={v}" for k, v in pairs)
        return self.endpoint + path

    def _signed(self, method: str, url: str, headers: Mapping[str, str],
                payloadSha256: str) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, headers=dict(headers))
        request.context["payloadSha256"] = payloadSha256
        self._signer.add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}

    async def call(
        self, method: str, key: str, what: str,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | IBodyProducer | None = None,
        payloadSha256: str | None = None,
        sink: Sink | None = None,
        missing: str = DESTINATION_NOT_FOUND,
    ) -> HTTPResponse:
        """
        One signed request; its answer if successful.

        @raise BackupRemoteError: the registered error of an S3 error answer
            (C{missing} for a missing key or upload).
        """
        if payloadSha256 is None:
            payloadSha256 = hashlib.sha256(body).hexdigest() if isinstance(body, bytes) \
                else EMPTY_SHA256
        url = self.url(key, query)
        signed = self._signed(method, url, headers or {}, payloadSha256)
        response = await self.session.request(method, url, signed, body, sink)
        if not response.ok:
            raise self.error(response, what, missing)
        return response

    def error(self, response: HTTPResponse, what: str,
              missing: str = DESTINATION_NOT_FOUND) -> BackupRemoteError:
        """The registered error of an S3 error answer."""
        code = message = ""
        if response.body.lstrip().startswith(b"<"):
            try:
                root = parseXML(response.body, self.location)
                code, message = _text(root, "Code"), _text(root, "Message")
            except BackupRemoteError:
                pass
        said = f"{code}: {message}".strip(": ") or f"HTTP {response.code} {response.phrase}"
        text = f"{self.location}: {what} failed: {said}"
        if code in _AUTH_CODES or response.code == 401:
            return BackupRemoteError(
                DESTINATION_AUTH_FAILED,
                f"{self.location} refused the access key or its secret ({what}: {said})")
        if code in _MISSING_CODES or (response.code == 404 and code != "NoSuchBucket"):
            return BackupRemoteError(missing, text)
        if code == "NoSuchBucket":
            return BackupRemoteError(
                DESTINATION_REFUSED,
                f"{self.location}: the bucket does not exist ({what}); create it first")
        if code in _FULL_CODES or response.code in (413, 507):
            return BackupRemoteError(DESTINATION_FULL, text)
        if code == "PreconditionFailed" or response.code == 412:
            return BackupRemoteError(
                DESTINATION_VERIFY_FAILED,
                f"{self.location}: {what}: the object changed since it was verified")
        if code in _BUSY_CODES or response.code >= 500:
            return BackupRemoteError(DESTINATION_UNREACHABLE, text)
        return BackupRemoteError(DESTINATION_REFUSED, text)

    def _answer(self, response: HTTPResponse, what: str) -> Element:
        """The XML of a 200 answer, which may still be an error (copy, complete)."""
        root = parseXML(response.body, self.location)
        if _local(root.tag) == "Error":
            raise self.error(HTTPResponse(500, "", response.headers, response.body), what)
        return root

    # Objects

    async def head(self, key: str) -> HTTPResponse | None:
        """The headers of C{key}, or C{None} if there is no such object."""
        try:
            return await self.call("HEAD", key, f"HEAD {key}")
        except BackupRemoteError as e:
            if e.code == DESTINATION_NOT_FOUND:
                return None
            raise

    async def putObject(self, key: str, body: IBodyProducer, md5: bytes, sha256: str,
                        metadata: Mapping[str, str] | None = None) -> str:
        headers = {"Content-Type": "application/octet-stream", "Content-MD5": md5Base64(md5)}
        headers.update({f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()})
        response = await self.call("PUT", key, f"PUT {key}", headers=headers, body=body,
                                   payloadSha256=sha256, missing=DESTINATION_REFUSED)
        return response.header("etag", "") or ""

    async def getObject(self, key: str, sink: Sink) -> HTTPResponse:
        return await self.call("GET", key, f"GET {key}", sink=sink)

    async def deleteObject(self, key: str) -> None:
        try:
            await self.call("DELETE", key, f"DELETE {key}")
        except BackupRemoteError as e:
            if e.code != DESTINATION_NOT_FOUND:
                raise

    async def copyObject(self, source: str, key: str, metadata: Mapping[str, str],
                         ifMatch: str | None) -> None:
        """A server-side copy of C{source} to C{key}, with new metadata."""
        headers = {
            "x-amz-copy-source": "/" + quote(f"{self.bucket}/{source}", safe="/-_.~"),
            "x-amz-metadata-directive": "REPLACE",
            "Content-Type": "application/octet-stream",
        }
        if ifMatch:
            headers["x-amz-copy-source-if-match"] = ifMatch
        headers.update({f"x-amz-meta-{k}": v for k, v in metadata.items()})
        response = await self.call("PUT", key, f"copy to {key}", headers=headers)
        self._answer(response, f"copy to {key}")

    async def listObjects(self, prefix: str, limit: int | None = None) -> list[S3Object]:
        """Every object whose key starts with C{prefix} (C{limit}: at most that many)."""
        found: list[S3Object] = []
        token = ""
        while True:
            query = [("list-type", "2"), ("prefix", prefix)]
            if limit is not None:
                query.append(("max-keys", str(limit)))
            if token:
                query.append(("continuation-token", token))
            response = await self.call("GET", "", f"list {prefix or '/'}", query=query,
                                       missing=DESTINATION_REFUSED)
            root = parseXML(response.body, self.location)
            for item in _children(root, "Contents"):
                found.append(S3Object(_text(item, "Key"), int(_text(item, "Size") or 0),
                                      _time(_text(item, "LastModified"))))
            token = _text(root, "NextContinuationToken")
            if (limit is not None and len(found) >= limit) or \
                    _text(root, "IsTruncated") != "true" or not token:
                return found

    # Multipart uploads

    async def createMultipart(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        headers = {"Content-Type": "application/octet-stream"}
        headers.update({f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()})
        response = await self.call("POST", key, f"start upload of {key}",
                                   query=[("uploads", "")], headers=headers,
                                   missing=DESTINATION_REFUSED)
        uploadId = _text(self._answer(response, "start upload"), "UploadId")
        if not uploadId:
            raise BackupRemoteError(
                DESTINATION_REFUSED, f"{self.location}: no upload id in the answer")
        return uploadId

    async def uploadPart(self, key: str, uploadId: str, number: int, body: IBodyProducer,
                         md5: bytes, sha256: str) -> str:
        response = await self.call(
            "PUT", key, f"part {number} of {key}",
            query=[("partNumber", str(number)), ("uploadId", uploadId)],
            headers={"Content-MD5": md5Base64(md5)}, body=body, payloadSha256=sha256,
            missing=DESTINATION_UNREACHABLE)
        etag = response.header("etag", "") or ""
        if etag.strip('"') != md5.hex() and not self._etagsNoted:
            # The server checked the part against its Content-MD5 and its signed
            # SHA-256 already; an ETag that is not the MD5 is a server convention
            # (AWS with SSE-KMS, some S3-compatible servers), not a corruption.
            self._etagsNoted = True
            log.info("{location}: part ETags are not their MD5 ({etag}); relying on "
                     "Content-MD5, the signed SHA-256 and the read-back",
                     location=self.location, etag=etag)
        return etag

    async def uploadPartCopy(self, key: str, uploadId: str, number: int, source: str,
                             first: int, last: int, ifMatch: str | None) -> str:
        headers = {
            "x-amz-copy-source": "/" + quote(f"{self.bucket}/{source}", safe="/-_.~"),
            "x-amz-copy-source-range": f"bytes={first}-{last}",
        }
        if ifMatch:
            headers["x-amz-copy-source-if-match"] = ifMatch
        response = await self.call(
            "PUT", key, f"copy part {number} to {key}",
            query=[("partNumber", str(number)), ("uploadId", uploadId)], headers=headers)
        return _text(self._answer(response, f"copy part {number}"), "ETag")

    async def completeMultipart(self, key: str, uploadId: str,
                                parts: Sequence[tuple[int, str]]) -> None:
        body = "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{_escape(etag)}</ETag></Part>"
            for number, etag in parts)
        data = (f'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"{body}</CompleteMultipartUpload>").encode("ascii")
        response = await self.call(
            "POST", key, f"complete upload of {key}", query=[("uploadId", uploadId)],
            headers={"Content-Type": "application/xml",
                     "Content-MD5": md5Base64(hashlib.md5(data).digest())},
            body=data, missing=DESTINATION_UNREACHABLE)
        self._answer(response, f"complete upload of {key}")

    async def abortMultipart(self, key: str, uploadId: str) -> None:
        try:
            await self.call("DELETE", key, f"abort upload of {key}",
                            query=[("uploadId", uploadId)])
        except BackupRemoteError as e:
            if e.code != DESTINATION_NOT_FOUND:
                raise

    async def listParts(self, key: str, uploadId: str) -> list[S3Part]:
        """
        The parts the server holds of the upload C{uploadId} to C{key}.

        @raise BackupRemoteError: C{DESTINATION_NOT_FOUND} if there is no such
            upload (aborted, completed or expired).
        """
        found: list[S3Part] = []
        marker = ""
        while True:
            query = [("uploadId", uploadId)]
            if marker:
                query.append(("part-number-marker", marker))
            response = await self.call("GET", key, f"list the parts of {key}", query=query)
            root = parseXML(response.body, self.location)
            for item in _children(root, "Part"):
                found.append(S3Part(int(_text(item, "PartNumber") or 0),
                                    int(_text(item, "Size") or 0), _text(item, "ETag")))
            marker = _text(root, "NextPartNumberMarker")
            if _text(root, "IsTruncated") != "true" or not marker:
                return found

    async def listUploads(self, prefix: str) -> list[S3Upload]:
        found: list[S3Upload] = []
        keyMarker = uploadMarker = ""
        while True:
            query = [("uploads", ""), ("prefix", prefix)]
            if keyMarker:
                query += [("key-marker", keyMarker), ("upload-id-marker", uploadMarker)]
            try:
                response = await self.call("GET", "", "list uploads", query=query)
            except BackupRemoteError as e:
                if e.code == DESTINATION_NOT_FOUND:
                    # rclone serve s3 answers NoSuchUpload for a bucket that has none
                    return found
                raise
            root = parseXML(response.body, self.location)
            for item in _children(root, "Upload"):
                found.append(S3Upload(_text(item, "Key"), _text(item, "UploadId"),
                                      _time(_text(item, "Initiated"))))
            keyMarker = _text(root, "NextKeyMarker")
            uploadMarker = _text(root, "NextUploadIdMarker")
            if _text(root, "IsTruncated") != "true" or not keyMarker:
                return found


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
