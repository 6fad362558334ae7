"""Destination URLs and names."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.destinations import (
    FTPURL,
    LocalURL,
    RcloneURL,
    S3URL,
    SFTPURL,
    WebDAVURL,
    checkName,
    datedName,
    featureOf,
    isTemporary,
    parseDestinationURL,
    temporaryName,
)
from backupremote.client.destinations.names import checkAnyName, finalNameOf
from backupremote.protocol.features import ALL_FEATURES
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

EXAMPLES = {
    "file:///srv/backups": LocalURL("/srv/backups"),
    "sftp://bob@127.0.0.1:2222/srv/x": SFTPURL("bob", "127.0.0.1", 2222, "/srv/x"),
    "sftp://bob@backup.example/~/x": SFTPURL("bob", "backup.example", 22, "x"),
    "sftp://bob@h/~": SFTPURL("bob", "h", 22, ""),
    "ftp://u@h/d": FTPURL("u", "h", 21, "/d", tls=False),
    "ftps://u@h:2121/d/e": FTPURL("u", "h", 2121, "/d/e", tls=True),
    "webdav+https://cloud.example/remote.php/dav/files/me/b":
        WebDAVURL(True, None, "cloud.example", 443, "/remote.php/dav/files/me/b"),
    "webdav+http://me@127.0.0.1:8080/dav": WebDAVURL(False, "me", "127.0.0.1", 8080, "/dav"),
    "s3+http://AKID@127.0.0.1:9000/bucket/pre/fix":
        S3URL(False, "AKID", "127.0.0.1", 9000, "bucket", "pre/fix/"),
    "s3+https://AKID@s3.example/bucket?region=eu-west-1":
        S3URL(True, "AKID", "s3.example", 443, "bucket", "", "eu-west-1"),
    "rclone:gdrive:backups/db": RcloneURL("gdrive", "backups/db"),
}

BAD = [
    "", " file:///x", "http://h/x", "file://otherhost/x", "file:///a/../b",
    "sftp://h/x", "sftp://u@/x", "sftp://u@h:0/x", "sftp://u@h:99999/x", "sftp://u@h/x#f",
    "sftp://u@h/x?y=1", "ftp://u@h", "s3+http://h/bucket", "s3+http://K@h/",
    "s3+http://K@h/B_ad", "s3+http://K@h/bucket?acl=1", "rclone:", "rclone:remote",
    "webdav+ftp://h/x",
]


class URLTests(SynchronousTestCase):
    def test_examples(self) -> None:
        for text, model in EXAMPLES.items():
            self.assertEqual(parseDestinationURL(text), model, text)
            self.assertEqual(parseDestinationURL(model.url), model, text)

    def test_types(self) -> None:
        self.assertEqual(
            sorted({parseDestinationURL(text).type for text in EXAMPLES}),
            sorted(["local", "sftp", "ftp", "ftps", "webdav", "s3", "rclone"]))

    def test_featuresAreLicensable(self) -> None:
        for text in EXAMPLES:
            self.assertIn(featureOf(parseDestinationURL(text)), ALL_FEATURES)

    def test_bad(self) -> None:
        for text in BAD:
            with self.assertRaises(BackupRemoteError, msg=text) as caught:
                parseDestinationURL(text)
            self.assertEqual(caught.exception.code, CONFIG_INVALID)

    def test_passwordNeverEchoed(self) -> None:
        for text in ("sftp://bob:s3cr3t@h/x", "ftps://bob:s3cr3t@h/x",
                     "webdav+https://bob:s3cr3t@h/x", "s3+http://AK:s3cr3t@h/b"):
            with self.assertRaises(BackupRemoteError) as caught:
                parseDestinationURL(text)
            self.assertNotIn("s3cr3t", str(caught.exception))

    @given(st.sampled_from(list(EXAMPLES)), st.text(max_size=40))
    def test_anySuffix(self, text: str, suffix: str) -> None:
        """Anything parses to a model that round-trips, or is CONFIG_INVALID."""
        try:
            model = parseDestinationURL(text + suffix)
        except BackupRemoteError as e:
            self.assertEqual(e.code, CONFIG_INVALID)
        else:
            self.assertEqual(parseDestinationURL(model.url), model)


class NameTests(SynchronousTestCase):
    def test_valid(self) -> None:
        for name in ("a", "db.sql.zst", "2026-11-03/db-1.sql.zst", "A+B_c"):
            self.assertEqual(checkName(name), name)

    def test_invalid(self) -> None:
        for name in ("", ".x", "../x", "a/b/c", "/a", "a/", "a b", "é", "a\\b", "-x", "x" * 201):
            with self.assertRaises(BackupRemoteError, msg=name):
                checkName(name)

    def test_temporary(self) -> None:
        temporary = temporaryName("2026-11-03/db.zst")
        self.assertTrue(temporary.startswith("2026-11-03/.db.zst."))
        self.assertTrue(isTemporary(temporary))
        self.assertEqual(finalNameOf(temporary), "2026-11-03/db.zst")
        self.assertEqual(checkAnyName(temporary), temporary)
        self.assertFalse(isTemporary("db.zst"))
        self.assertNotEqual(temporaryName("a"), temporaryName("a"))

    def test_dated(self) -> None:
        self.assertEqual(datedName("db.zst", datetime(2026, 1, 2, 23, 0, tzinfo=timezone.utc)),
                         "2026-01-02/db.zst")
