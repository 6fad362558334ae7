"""
The XML of WebDAV's PROPFIND: the request we send and the multistatus answer,
parsed with C{defusedxml} (no entities, no external references: the answer
comes from a server we do not control).
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element

import defusedxml.ElementTree
from attrs import frozen
from defusedxml import DefusedXmlException

from backupremote.protocol.errors import DESTINATION_REFUSED, BackupRemoteError

DAV = "{DAV:}"

#: The properties a listing needs, and nothing else (Nextcloud answers
#: every property it knows to an empty PROPFIND, which is slow).
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/>"
    b"</d:prop></d:propfind>"
)


@frozen
class DavEntry:
    """One member of a PROPFIND answer."""

    path: str  # decoded absolute path, no trailing slash (C{""} for the root)
    collection: bool
    size: int | None
    modified: datetime | None


def parseMultistatus(body: bytes, location: str) -> list[DavEntry]:
    """
    The members of a C{207 Multi-Status} answer to PROPFIND.

    @raise BackupRemoteError: C{DESTINATION_REFUSED} for an answer that is
        not a well-formed (and harmless) multistatus document.
    """
    try:
        root = defusedxml.ElementTree.fromstring(body)
    except (DefusedXmlException, SyntaxError, ValueError) as e:
        raise BackupRemoteError(
            DESTINATION_REFUSED,
            f"{location} answered PROPFIND with XML that cannot be read: {e}") from None
    if root.tag != DAV + "multistatus":
        raise BackupRemoteError(
            DESTINATION_REFUSED, f"{location} answered PROPFIND without a multistatus")
    entries = []
    for response in root.iter(DAV + "response"):
        href = response.findtext(DAV + "href")
        if not href:
            continue
        props = _okProps(response)
        if props is None:
            continue
        resourceType = props.find(DAV + "resourcetype")
        collection = resourceType is not None and resourceType.find(DAV + "collection") is not None
        entries.append(DavEntry(
            hrefPath(href), collection,
            _integer(props.findtext(DAV + "getcontentlength")),
            _date(props.findtext(DAV + "getlastmodified"))))
    return entries


def hrefPath(href: str) -> str:
    """The decoded path of an C{href} (absolute URL or path), without a trailing slash."""
    return unquote(urlsplit(href.strip()).path).rstrip("/")


def _okProps(response: Element) -> Element | None:
    """The C{prop} of the propstat whose status is 200 (the found properties)."""
    for propstat in response.iter(DAV + "propstat"):
        status = propstat.findtext(DAV + "status") or ""
        if " 200 " in f"{status} ":
            return propstat.find(DAV + "prop")
    return None


def _integer(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)
