"""
Real destination servers on 127.0.0.1 for the destination tests: OpenSSH's
C{sshd} (SFTP) and C{vsftpd} (FTP and FTPS), installed by
C{scripts/install-test-servers}.

A server is started once per test module (L{shared}) and serves every test
of it, each test getting a fresh folder (L{DestinationServer.newFolder});
a test that stops its server (the mid-upload faults) starts a private one
(L{startSSH}, L{startFTP}) and stops it in its cleanup. Servers are plain
child processes outside the reactor (so a shared one outlives each test's
reactor checks), started through C{setpriv --pdeathsig} so that they die
with the test process, and stopped at exit.

Both servers log users in through the OS: the tests make (once, idempotent)
the account L{USER} and give it a fresh random password per test process.
That needs root, as the servers themselves do (CI runs as root).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase

from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate
from tests.databases.servers import HOST, freePort, which

USER = "brdesttest"
STARTUP_TIMEOUT = 30.0


def requireRoot() -> None:
    if os.geteuid() != 0:
        # Not a hidden missing dependency: CI and the developers' machines
        # run as root; the servers cannot log other users in otherwise.
        raise SkipTest("the sshd and vsftpd tests start real servers as root")


# --- the test account ------------------------------------------------------

#: Where the account's password is kept (0600, root's), so that test
#: processes running at the same time agree on it.
PASSWORD_FILE = f"/var/lib/backupremote-tests/{USER}.password"
_password: str | None = None


def testAccount() -> tuple[str, str]:
    """
    The user the servers log in (created once) and its random password
    (set once per machine, kept in L{PASSWORD_FILE}).
    """
    requireRoot()
    os.makedirs(os.path.dirname(PASSWORD_FILE), mode=0o700, exist_ok=True)
    lock = os.open(os.path.dirname(PASSWORD_FILE), os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(
                [which("useradd"), "--create-home", "--home-dir", f"/home/{USER}",
                 "--shell", "/bin/sh", USER], check=True, capture_output=True)
        global _password
        if _password is not None:
            return USER, _password
        try:
            with open(PASSWORD_FILE) as handle:
                password = handle.read().strip()
        except FileNotFoundError:
            password = "pw-" + secrets.token_urlsafe(18)
            with open(os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                      "w") as handle:
                handle.write(password + "\n")
        # Set it once per process even if the file existed: the account may
        # come from another run (or an older version of these tests).
        subprocess.run([which("chpasswd")], input=f"{USER}:{password}\n".encode(),
                       check=True, capture_output=True)
        _password = password
        return USER, password
    finally:
        os.close(lock)


def _makeFolder(prefix: str) -> str:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return os.path.abspath(tempfile.mkdtemp(prefix=f"br-{prefix}-", dir=base))


def _chown(path: str, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


# --- servers ---------------------------------------------------------------


@define
class DestinationServer:
    """One running server: where it listens, its folder, how to stop it."""

    name: str
    port: int
    folder: str
    process: subprocess.Popen[bytes]
    log: str
    user: str
    password: str
    extra: dict[str, Any] = field(factory=dict)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def newFolder(self) -> FilePath:
        """A fresh empty folder the test user owns (mode 0700): one test's root."""
        path = tempfile.mkdtemp(prefix="root-", dir=os.path.join(self.folder, "roots"))
        _chown(path, self.user)
        return FilePath(path)

    def sessionPids(self) -> list[int]:
        """The server's processes: the listener and every session it forked."""
        found = {self.process.pid}
        changed = True
        while changed:
            changed = False
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) in found:
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if parent in found:
                    found.add(int(entry))
                    changed = True
        return sorted(found)

    def kill(self) -> None:
        """Stop the server and every session of it at once (a crash, a pulled cable)."""
        for pid in self.sessionPids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)

    def stop(self) -> None:
        if self.running:
            self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def tail(self) -> str:
        try:
            with open(self.log, "rb") as handle:
                return handle.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""


def _spawn(argv: list[str], log: str, cwd: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [which("setpriv"), "--pdeathsig", "KILL", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, start_new_session=True)


async def _waitForPort(server: DestinationServer) -> None:
    import socket
    deadline = reactor.seconds() + STARTUP_TIMEOUT
    while True:
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex((HOST, server.port)) == 0:
                return
        if not server.running or reactor.seconds() > deadline:
            server.stop()
            raise RuntimeError(f"{server.name} did not start on {HOST}:{server.port}:\n"
                               f"{server.tail()}")
        await deferLater(reactor, 0.05, lambda: None)


# --- OpenSSH ---------------------------------------------------------------


async def startSSH(case: TestCase | None = None) -> DestinationServer:
    """
    A private C{sshd} on a free port with an Ed25519 host key, password and
    public-key login for L{USER}, SFTP by C{internal-sftp}. C{extra} holds
    C{hostKey} (its public key file), C{hostKeyFingerprint} (as
    C{ssh-keygen -l -E sha256} prints it), C{clientKey} (a private key whose
    public half is authorised) and C{knownHosts} (a known_hosts line).
    """
    user, password = testAccount()
    folder = _makeFolder("sshd")
    os.makedirs(os.path.join(folder, "roots"))
    _chown(os.path.join(folder, "roots"), user)
    os.chmod(folder, 0o755)
    os.makedirs("/run/sshd", exist_ok=True)
    keygen = which("ssh-keygen")
    hostKey = os.path.join(folder, "host_ed25519")
    clientKey = os.path.join(folder, "client_ed25519")
    for path in (hostKey, clientKey):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", path],
                       check=True, capture_output=True)
    authorized = os.path.join(folder, "authorized_keys")
    shutil.copy(clientKey + ".pub", authorized)
    os.chmod(authorized, 0o644)
    port = freePort()
    config = os.path.join(folder, "sshd_config")
    with open(config, "w") as handle:
        handle.write(
            f"Port {port}\nListenAddress {HOST}\nHostKey {hostKey}\n"
            f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {authorized}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"AllowUsers {user}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
            "MaxStartups 100\nMaxSessions 100\n")
    fingerprint = subprocess.run(
        [keygen, "-l", "-E", "sha256", "-f", hostKey + ".pub"], check=True,
        capture_output=True, text=True).stdout.split()[1]
    log = os.path.join(folder, "sshd.log")
    process = _spawn([which("sshd"), "-D", "-e", "-f", config], log, folder)
    server = DestinationServer("sshd", port, folder, process, log, user, password, {
        "hostKey": hostKey + ".pub",
        "hostKeyFingerprint": fingerprint,
        "clientKey": clientKey,
        "knownHosts": f"[{HOST}]:{port} " + " ".join(
            open(hostKey + ".pub").read().split()[:2]) + "\n",
    })
    await _waitForPort(server)
    if case is not None:
        case.addCleanup(server.stop)
    return server


# --- vsftpd ----------------------------------------------------------------


async def startFTP(case: TestCase | None = None, tls: bool = False) -> DestinationServer:
    """
    A private C{vsftpd} on a free port for L{USER}, passive mode on
    127.0.0.1. With C{tls}: explicit FTPS required for logins and data, a
    self-signed certificate for C{127.0.0.1} (C{extra}: C{certificate}, a
    PEM file; C{fingerprint}, its SHA-256) and vsftpd's default
    C{require_ssl_reuse=YES}.
    """
    user, password = testAccount()
    folder = _makeFolder("ftpd")
    os.makedirs(os.path.join(folder, "roots"))
    _chown(os.path.join(folder, "roots"), user)
    os.chmod(folder, 0o755)
    empty = os.path.join(folder, "empty")
    os.makedirs(empty)
    os.chmod(empty, 0o555)
    port = freePort()
    lines = [
        "listen=YES", f"listen_address={HOST}", f"listen_port={port}", "listen_ipv6=NO",
        "background=NO", "seccomp_sandbox=NO", "anonymous_enable=NO", "local_enable=YES",
        "write_enable=YES", "local_umask=077", "pasv_enable=YES", f"pasv_address={HOST}",
        "port_enable=NO", "pam_service_name=vsftpd", "userlist_enable=NO",
        f"secure_chroot_dir={empty}", "xferlog_enable=YES",
        f"vsftpd_log_file={folder}/vsftpd.xfer.log", "dual_log_enable=NO",
        "connect_from_port_20=NO", "use_localtime=NO", "max_per_ip=0", "max_clients=0",
        "delete_failed_uploads=NO", "idle_session_timeout=120", "data_connection_timeout=60",
    ]
    extra: dict[str, Any] = {}
    if tls:
        keyPem, certPem = generateServerCertificate([HOST])
        certificate, key = os.path.join(folder, "ftpd.crt"), os.path.join(folder, "ftpd.key")
        with open(certificate, "wb") as handle:
            handle.write(certPem)
        with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
            handle.write(keyPem)
        fingerprint = fingerprintOfPem(certPem)
        lines += [
            "ssl_enable=YES", f"rsa_cert_file={certificate}", f"rsa_private_key_file={key}",
            "force_local_logins_ssl=YES", "force_local_data_ssl=YES", "allow_anon_ssl=NO",
            "ssl_sslv2=NO", "ssl_sslv3=NO", "ssl_tlsv1=YES",
            "require_ssl_reuse=YES", "ssl_ciphers=HIGH",
        ]
        extra = {"certificate": certificate, "fingerprint": fingerprint}
    config = os.path.join(folder, "vsftpd.conf")
    with open(config, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(config, 0o600)
    log = os.path.join(folder, "vsftpd.log")
    process = _spawn([which("vsftpd"), config], log, folder)
    server = DestinationServer("vsftpd", port, folder, process, log, user, password, extra)
    await _waitForPort(server)
    if case is not None:
        case.addCleanup(server.stop)
    return server


# --- one server per test module ---------------------------------------------

_shared: dict[tuple[str, str], DestinationServer] = {}


async def shared(case: TestCase, start: Callable[..., Any], **kwargs: Any) -> DestinationServer:
    """
    The server C{start(**kwargs)} makes, started once for the test module of
    C{case} and stopped when the test process exits.
    """
    key = (type(case).__module__, repr(sorted(kwargs.items())))
    server = _shared.get(key)
    if server is None or not server.running:
        server = await start(None, **kwargs)
        _shared[key] = server
    return server


@atexit.register
def _stopShared() -> None:
    for server in _shared.values():
        server.stop()
