"""
Every file the CLI makes is 0600 and every folder 0700, whatever the
umask it was started with: C{license keygen/issue}, C{server init},
C{server add-client --secret-file} and C{client init}.
"""

from __future__ import annotations

import json
import os

from twisted.python.filepath import FilePath

from tests.cli.test_admin import CLITestCase, mode, run


class FileModeTests(CLITestCase):
    def setUp(self) -> None:
        # a lax umask, restored afterwards; main() must not leak its own
        self.addCleanup(os.umask, os.umask(0o022))

    def assertPrivateTree(self, top: FilePath) -> None:
        self.assertEqual(mode(top), 0o700, top.path)
        for path in top.walk():
            expected = 0o700 if path.isdir() else 0o600
            self.assertEqual(mode(path), expected, path.path)

    def test_everythingPrivate(self) -> None:
        keys = FilePath(self.mktemp())
        self.ok("license", "keygen", keys.path)
        self.assertPrivateTree(keys)
        self.issuerKey = keys.child("issuer.key").path
        self.issuerPub = keys.child("issuer.pub").path

        server = FilePath(self.mktemp())
        out = self.ok("server", "init", server.path, "--trust-issuer", self.issuerPub,
                      "--json")
        fingerprint = json.loads(out)["fingerprint"]
        secretFile = FilePath(self.mktemp())
        self.ok("server", "add-client", "--config", server.child("server.toml").path, "bob",
                "--secret-file", secretFile.path)
        self.assertPrivateTree(server)
        self.assertEqual(mode(secretFile), 0o600)

        token = self.issue("bob")
        self.assertEqual(mode(FilePath(token)), 0o600)

        client = FilePath(self.mktemp()).child("nested")
        self.ok("client", "init", client.path, "--server", "127.0.0.1:7443",
                "--fingerprint", fingerprint, "--client-id", "bob",
                "--secret-file", secretFile.path, "--license", token)
        self.assertPrivateTree(client.parent())
        self.assertEqual(mode(client.child("client.license")), 0o600)

        # main() put the caller's umask back
        mask = os.umask(0)
        os.umask(mask)
        self.assertEqual(mask, 0o022)

    def test_umaskDuringCommand(self) -> None:
        """While a command runs, the umask is 077 (what any library call creates is private)."""
        seen = []
        from backupremote.cli import serveradmin

        original = serveradmin.createServerFolder

        def spy(*args: object, **kwargs: object) -> object:
            mask = os.umask(0)
            os.umask(mask)
            seen.append(mask)
            return original(*args, **kwargs)

        self.patch(serveradmin, "createServerFolder", spy)
        code, out, err = run("server", "init", self.mktemp())
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(seen, [0o077])
