"""
Real database servers on 127.0.0.1 for integration tests.

Each C{start...} coroutine makes a private temp folder, starts the real
engine there on a free port, creates database C{appdb} (Firebird: a file
C{app.fdb}) with a user and a random password, loads table L{TABLE} with
L{ROW_COUNT} rows, and registers a cleanup on the test case that stops the
server (waiting until its process is gone) and removes the folder.

Passwords never appear on a command line: PostgreSQL gets C{PGPASSWORD} in
the environment, MariaDB a 0600 options file (C{--defaults-file}), Firebird
C{ISC_USER}/C{ISC_PASSWORD} in the environment; SQL that sets a password is
written to the client's standard input.

Usable from C{async def test_...} methods of L{twisted.trial.unittest.TestCase}::

    server = await startPostgreSQL(self)
    out = await server.sql("SELECT count(*) FROM items", database="appdb")

Every child process is run through the reactor (L{runProcess}), so nothing
blocks it. Each server runs in the foreground as a child of the test process
(PostgreSQL as the C{postgres} user), started through C{setpriv --pdeathsig}
so that it is stopped even if the test process dies without its cleanup.

For speed, folders go to /dev/shm (tmpfs) when it has room, and the
PostgreSQL and MariaDB data dirs are copied from a template initialised once
per test process (removed at exit); each server still gets its own
passwords, database and data.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import socket
import sqlite3
import tempfile
from typing import Any, Mapping, Sequence

from attrs import define, field, frozen
from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

HOST = "127.0.0.1"
DATABASE = "appdb"
TABLE = "items"
ROW_COUNT = 300
APP_USER = "app"
WRONG_PASSWORD = "definitely-not-the-password"

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0


# --- helpers ---------------------------------------------------------------


def freePort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wrongPort() -> int:
    """A port where nothing listens: connecting to it is refused."""
    return freePort()


def wrongPassword(password: str | None = None) -> str:
    """A password that is not C{password} (default: L{WRONG_PASSWORD})."""
    if password == WRONG_PASSWORD:
        return WRONG_PASSWORD + "-2"
    return WRONG_PASSWORD


def randomPassword() -> str:
    """Random, and safe to quote in SQL ('[A-Za-z0-9_-]' only)."""
    return "pw-" + secrets.token_urlsafe(18)


def isAlive(pid: int | None) -> bool:
    """Whether a process with that pid exists (and is not a zombie)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processesIn(folder: str) -> list[int]:
    """Pids of the live processes that belong to C{folder}.

    Those whose working directory is inside it (PostgreSQL's and MariaDB's
    children run in the data dir) or whose command line or environment
    names it (Firebird's C{FIREBIRD=}); after a stop this should be empty.
    """
    folder = os.path.realpath(folder)
    needle = folder.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if (cwd == folder or cwd.startswith(folder + "/") or needle in cmdline
                or needle in environ) and isAlive(int(entry)):
            found.append(int(entry))
    return found


def which(name: str, *extra: str) -> str:
    """The absolute path of a program, looking also in C{extra} folders."""
    found = shutil.which(name, path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin", *extra]))
    if not found:
        raise FileNotFoundError(f"{name} not found: run scripts/install-test-servers")
    return found


def _baseEnv(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PG", "MYSQL", "MARIADB", "ISC_", "FIREBIRD"))}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(changes)
    return env


def _baseFolder() -> str | None:
    # tmpfs when there is a roomy one: writing data dirs on this kind of
    # machine's disk costs about a second per 40 MB in system time.
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return None
    if stat.f_bavail * stat.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK | os.X_OK):
        return "/dev/shm"
    return None


def _makeFolder(prefix: str) -> str:
    # A short path (unix socket paths are limited to 107 bytes), absolute,
    # mode 0700.
    return os.path.abspath(tempfile.mkdtemp(prefix=f"br-{prefix}-", dir=_baseFolder()))


def _writePrivate(path: str, content: str, owner: str | None = None) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path, 0o600)
    if owner is not None and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


@frozen
class ProcessResult:
    out: str
    err: str
    code: int | None
    signal: int | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0


class ProcessFailed(Exception):
    def __init__(self, argv: Sequence[str], result: ProcessResult) -> None:
        super().__init__(
            f"{' '.join(argv)} exited with {result.code} (signal {result.signal})\n"
            f"stdout: {result.out[-4000:]}\nstderr: {result.err[-4000:]}")
        self.result = result


class _Collect(ProcessProtocol):
    def __init__(self, stdin: bytes) -> None:
        self.stdin = stdin
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: defer.Deferred[ProcessResult] = defer.Deferred()

    def connectionMade(self) -> None:
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        self.ended.callback(ProcessResult(
            b"".join(self.out).decode("utf-8", "replace"),
            b"".join(self.err).decode("utf-8", "replace"), code, sig))


async def runProcess(
    argv: Sequence[str], env: Mapping[str, str] | None = None,
    stdin: bytes | str = b"", path: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> ProcessResult:
    """Run a program through the reactor; its stdout, stderr and exit code.

    C{argv[0]} may be a bare name (looked up on C{PATH}). Killed after
    C{timeout} seconds.
    """
    if isinstance(stdin, str):
        stdin = stdin.encode()
    argv = [which(argv[0]) if "/" not in argv[0] else argv[0], *argv[1:]]
    protocol = _Collect(stdin)
    transport = reactor.spawnProcess(
        protocol, argv[0], argv, env=dict(env if env is not None else _baseEnv()), path=path)
    timer = reactor.callLater(timeout, _kill, transport)
    try:
        return await protocol.ended
    finally:
        if timer.active():
            timer.cancel()


def _kill(transport: Any) -> None:
    try:
        transport.signalProcess("KILL")
    except Exception:
        pass


async def checkProcess(argv: Sequence[str], env: Mapping[str, str] | None = None,
                       stdin: bytes | str = b"", **kw: Any) -> str:
    """L{runProcess}, raising L{ProcessFailed} unless it exits 0; its stdout."""
    result = await runProcess(argv, env, stdin, **kw)
    if not result.ok:
        raise ProcessFailed(argv, result)
    return result.out


async def _sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def _portOpen(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) == 0


class _Daemon(ProcessProtocol):
    """A server that stays in the foreground as our child.

    Its stdout and stderr go to C{log}. It is started through C{setpriv},
    which execs it (same pid) after asking the kernel to send it
    C{stopSignal} should the test process die without running the cleanup.
    """

    def __init__(self, name: str, log: str, stopSignal: str) -> None:
        self.name = name
        self.log = log
        self.stopSignal = stopSignal
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.exited = False
        self.reason: Failure | None = None

    def processEnded(self, reason: Failure) -> None:
        self.exited = True
        self.reason = reason
        self.ended.callback(None)

    @classmethod
    def spawn(cls, name: str, argv: Sequence[str], env: Mapping[str, str], path: str,
              log: str, stopSignal: str = "TERM", user: str | None = None) -> _Daemon:
        prefix = [which("setpriv"), "--pdeathsig", stopSignal]
        if user is not None and os.geteuid() == 0:
            prefix += [f"--reuid={user}", f"--regid={user}", "--init-groups"]
        argv = [*prefix, "--", *argv]
        protocol = cls(name, log, stopSignal)
        logFd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if user is not None and os.geteuid() == 0:
                pw = pwd.getpwnam(user)
                os.fchown(logFd, pw.pw_uid, pw.pw_gid)
            reactor.spawnProcess(protocol, argv[0], argv, env=dict(env), path=path,
                                 childFDs={0: "w", 1: logFd, 2: logFd})
        finally:
            os.close(logFd)
        protocol.transport.closeStdin()
        return protocol

    @property
    def pid(self) -> int | None:
        return None if self.exited else self.transport.pid

    async def waitUntilReady(self, port: int, ready: Any = None, extraLog: str | None = None) -> None:
        """Wait until C{port} accepts connections (and C{ready()} is true)."""
        deadline = reactor.seconds() + STARTUP_TIMEOUT
        while not (_portOpen(port) and (ready is None or ready())):
            if self.exited or reactor.seconds() > deadline:
                raise RuntimeError(
                    f"{self.name} did not get ready on {HOST}:{port}"
                    f" ({'exited: ' + str(self.reason.value) if self.exited else 'timed out'})"
                    f"{_tail(self.log)}{_tail(extraLog)}")
            await _sleep(0.05)

    async def stop(self) -> None:
        """Send the stop signal and wait until it is gone (KILL after a while)."""
        if self.exited:
            return
        self.transport.signalProcess(self.stopSignal)
        timer = reactor.callLater(STOP_TIMEOUT, _kill, self.transport)
        try:
            await self.ended
        finally:
            if timer.active():
                timer.cancel()


def _tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            return f"\n--- {path}:\n" + f.read()[-4000:]
    except OSError:
        return ""


class _Stopper:
    """One idempotent stop-then-remove, registered as the test's cleanup.

    Calling it again (or from the cleanup after a test called it) waits for
    the first call and succeeds; the first caller gets any error.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.__name__ = f"stop-and-remove {folder}"  # trial names cleanups
        self.steps: list[Any] = []
        self.started = False
        self.finished = False
        self.waiters: list[defer.Deferred[None]] = []

    def add(self, step: Any) -> None:
        self.steps.append(step)

    def __call__(self) -> defer.Deferred[None]:
        if self.finished:
            return defer.succeed(None)
        if self.started:
            waiter: defer.Deferred[None] = defer.Deferred()
            self.waiters.append(waiter)
            return waiter
        self.started = True
        return defer.Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        errors = []
        try:
            for step in reversed(self.steps):
                try:
                    await step()
                except Exception as e:  # keep stopping the others
                    errors.append(e)
            shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            self.finished = True
            waiters, self.waiters = self.waiters, []
            for waiter in waiters:
                waiter.callback(None)
        if errors:
            raise errors[0]


class _Templates:
    """Freshly initialised data dirs, made once per test process and copied.

    C{initdb} and C{mariadb-install-db} take about a second each; a copy
    (C{cp -a}, owners kept) takes a few milliseconds. Removed at exit.
    """

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}
        self.lock = defer.DeferredLock()
        self.folders: list[str] = []

    async def get(self, kind: str, build: Any) -> Any:
        async with self.lock:
            if kind not in self.made:
                folder = _makeFolder(f"template-{kind}")
                if not self.folders:
                    atexit.register(self.removeAll)
                self.folders.append(folder)
                self.made[kind] = await build(folder)
            return self.made[kind]

    def removeAll(self) -> None:
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


_templates = _Templates()


async def _copyTree(source: str, destination: str) -> None:
    await checkProcess(["cp", "-a", source, destination])


# --- PostgreSQL ------------------------------------------------------------


def postgresBinDir() -> str:
    """The folder of PostgreSQL's server programs (initdb, postgres), newest."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return os.path.dirname(candidates[-1])
    return os.path.dirname(os.path.realpath(which("initdb")))


def _asPostgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@define
class PostgreSQLServer:
    host: str
    port: int
    database: str
    user: str
    password: str
    superuser: str
    superuserPassword: str
    dataDir: str
    folder: str
    binDir: str
    daemon: _Daemon = field(repr=False)
    stop: _Stopper = field(repr=False)

    def env(self, password: str | None = None) -> dict[str, str]:
        """Environment for libpq clients (psql, pg_dump) with PGPASSWORD."""
        return _baseEnv(PGPASSWORD=self.password if password is None else password,
                        PGCONNECT_TIMEOUT="10")

    def psqlArgs(self, user: str | None = None, database: str | None = None,
                 port: int | None = None) -> list[str]:
        return ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.host, "-p", str(self.port if port is None else port),
                "-U", user or self.user, "-d", database or self.database]

    async def query(self, statement: str, user: str | None = None, password: str | None = None,
                    database: str | None = None, port: int | None = None) -> ProcessResult:
        """Run SQL with psql as the app user (or C{user}); never raises."""
        return await runProcess(self.psqlArgs(user, database, port), self.env(password),
                                statement)

    async def sql(self, statement: str, database: str | None = None) -> str:
        """Run SQL as the superuser with psql (-A -t); its stdout."""
        argv = self.psqlArgs(self.superuser, database or "postgres")
        return await checkProcess(argv, self.env(self.superuserPassword), statement)

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (None once stopped)."""
        return self.daemon.pid


def _postmasterReady(dataDir: str) -> bool:
    # What pg_ctl -w waits for: the 8th line of postmaster.pid says "ready".
    try:
        with open(os.path.join(dataDir, "postmaster.pid")) as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


async def startPostgreSQL(testCase: Any) -> PostgreSQLServer:
    """Start a PostgreSQL cluster on 127.0.0.1 (scram-sha-256 auth).

    The postmaster runs in the foreground as the C{postgres} user, a child of
    the test process; stopping it is a fast shutdown (SIGINT, what
    C{pg_ctl stop -m fast} sends).
    """
    folder = _makeFolder("pg")
    stopper = _Stopper(folder)
    testCase.addCleanup(stopper)
    binDir = postgresBinDir()
    dataDir = os.path.join(folder, "data")
    env = _baseEnv(LC_ALL="C.UTF-8", LANG="C.UTF-8")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)

    async def initdb(template: str) -> tuple[str, str]:
        if os.geteuid() == 0:
            os.chown(template, pw.pw_uid, pw.pw_gid)
        password = randomPassword()
        pwfile = _writePrivate(os.path.join(template, "pwfile"), password + "\n", "postgres")
        await checkProcess(_asPostgres([
            os.path.join(binDir, "initdb"), "-D", os.path.join(template, "data"),
            "-U", "postgres", "-A", "scram-sha-256", "--pwfile", pwfile, "--no-sync",
            "-E", "UTF8", "--locale=C.UTF-8"]), env, path=template)
        os.unlink(pwfile)
        return os.path.join(template, "data"), password

    templateDir, templatePassword = await _templates.get("pg", initdb)
    await _copyTree(templateDir, dataDir)
    superPassword, appPassword = randomPassword(), randomPassword()
    port = freePort()
    daemon = _Daemon.spawn("postgres", [
        os.path.join(binDir, "postgres"), "-D", dataDir, "-p", str(port),
        "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={folder}",
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        "-c", "max_connections=30", "-c", "shared_buffers=16MB",
    ], env, folder, os.path.join(folder, "server.log"), stopSignal="INT", user="postgres")
    stopper.add(daemon.stop)
    await daemon.waitUntilReady(port, lambda: _postmasterReady(dataDir))
    server = PostgreSQLServer(
        host=HOST, port=port, database=DATABASE, user=APP_USER, password=appPassword,
        superuser="postgres", superuserPassword=superPassword, dataDir=dataDir,
        folder=folder, binDir=binDir, daemon=daemon, stop=stopper)
    await checkProcess(server.psqlArgs("postgres", "postgres"), server.env(templatePassword), (
        f"ALTER ROLE postgres PASSWORD '{superPassword}';\n"
        f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{appPassword}';\n"
        f"CREATE DATABASE {DATABASE} OWNER {APP_USER};\n"))
    await checkProcess(server.psqlArgs(), server.env(), (
        f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text NOT NULL);\n"
        f"INSERT INTO {TABLE} SELECT g, 'item ' || g FROM generate_series(1, {ROW_COUNT}) g;\n"))
    return server


# --- MariaDB ---------------------------------------------------------------


@define
class MariaDBServer:
    host: str
    port: int
    database: str
    user: str
    password: str
    superuser: str
    superuserPassword: str
    dataDir: str
    folder: str
    socket: str
    pidFile: str
    daemon: _Daemon = field(repr=False)
    stop: _Stopper = field(repr=False)
    _files: int = 0

    def optionsFile(self, user: str | None = None, password: str | None = None) -> str:
        """A new 0600 options file ([client] user, password, host, port).

        Use it as the first argument: C{--defaults-file=PATH} (only this file)
        or C{--defaults-extra-file=PATH}.
        """
        self._files += 1
        path = os.path.join(self.folder, f"client-{self._files}.cnf")
        return _writePrivate(path, (
            "[client]\n"
            f"user={user or self.user}\n"
            f"password={self.password if password is None else password}\n"
            f"host={self.host}\nport={self.port}\nprotocol=TCP\n"))

    async def query(self, statement: str, user: str | None = None, password: str | None = None,
                    database: str | None = None, port: int | None = None) -> ProcessResult:
        """Run SQL with the mariadb client as the app user (or C{user}); never raises."""
        options = self.optionsFile(user, password)
        argv = [f"--defaults-file={options}", "--batch", "--skip-column-names",
                "--connect-timeout=10", f"--database={database or self.database}"]
        if port is not None:
            argv.append(f"--port={port}")
        return await runProcess(["mariadb", *argv], _baseEnv(), statement)

    async def sql(self, statement: str, database: str | None = None) -> str:
        """Run SQL as root over TCP; its stdout (tab separated, no header)."""
        result = await self.query(statement, self.superuser, self.superuserPassword,
                                  database or "mysql")
        if not result.ok:
            raise ProcessFailed(["mariadb"], result)
        return result.out

    @property
    def pid(self) -> int | None:
        return self.daemon.pid


async def startMariaDB(testCase: Any) -> MariaDBServer:
    """Start a MariaDB server on 127.0.0.1 with real grants."""
    folder = _makeFolder("mdb")
    stopper = _Stopper(folder)
    testCase.addCleanup(stopper)
    dataDir = os.path.join(folder, "data")
    tmpDir = os.path.join(folder, "tmp")
    os.mkdir(tmpDir, 0o700)
    # A private tmpdir: in the shared /tmp, concurrent servers' temporary
    # tables have been seen to clash.
    fast = ["--skip-name-resolve", "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0", "--innodb-flush-method=nosync",
            "--innodb-log-file-size=8M", "--innodb-buffer-pool-size=16M"]
    env = _baseEnv()

    async def installDb(template: str) -> str:
        os.mkdir(os.path.join(template, "tmp"), 0o700)
        await checkProcess([
            "mariadb-install-db", "--no-defaults", "--user=root",
            f"--datadir={template}/data", "--auth-root-authentication-method=normal",
            "--skip-test-db", f"--tmpdir={template}/tmp", *fast], env, path=template)
        return os.path.join(template, "data")

    await _copyTree(await _templates.get("mariadb", installDb), dataDir)
    port = freePort()
    sock = os.path.join(folder, "sock")
    pidFile = os.path.join(folder, "pid")
    log = os.path.join(folder, "error.log")
    daemon = _Daemon.spawn("mariadbd", [
        which("mariadbd"), "--no-defaults", "--user=root", f"--datadir={dataDir}",
        f"--socket={sock}", f"--port={port}", f"--bind-address={HOST}",
        f"--pid-file={pidFile}", f"--log-error={log}", f"--tmpdir={tmpDir}",
        "--performance-schema=OFF", "--max-connections=50", *fast], env, folder, os.path.join(folder, "mariadbd.out"))
    stopper.add(daemon.stop)
    await daemon.waitUntilReady(port, extraLog=log)
    rootPassword, appPassword = randomPassword(), randomPassword()
    rootCnf = _writePrivate(os.path.join(folder, "root-socket.cnf"),
                            f"[client]\nuser=root\nsocket={sock}\n")
    mariadb = ["mariadb", f"--defaults-file={rootCnf}", "--batch", "--skip-column-names"]
    hosts = (await checkProcess(
        mariadb, env, "SELECT Host FROM mysql.user WHERE User='root';")).split()
    # Entries by host name are ignored under --skip-name-resolve (and cannot
    # be altered): drop them; give every other root entry the password.
    local = ("localhost", "127.0.0.1", "::1")
    setup = ["DELETE FROM mysql.global_priv WHERE User = 'root' AND Host NOT IN"
             " ('localhost', '127.0.0.1', '::1');", "FLUSH PRIVILEGES;"]
    setup += [f"ALTER USER 'root'@'{h}' IDENTIFIED BY '{rootPassword}';"
              for h in hosts if h in local]
    setup += [
        f"CREATE DATABASE {DATABASE};",
        f"USE {DATABASE};",
        f"CREATE USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{appPassword}',"
        f" '{APP_USER}'@'localhost' IDENTIFIED BY '{appPassword}';",
        f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{APP_USER}'@'127.0.0.1', '{APP_USER}'@'localhost';",
        f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL)"
        " ENGINE=InnoDB;",
        f"INSERT INTO {TABLE} SELECT seq, CONCAT('item ', seq) FROM seq_1_to_{ROW_COUNT};",
        "FLUSH PRIVILEGES;",
    ]
    await checkProcess(mariadb, env, "\n".join(setup) + "\n")
    os.unlink(rootCnf)
    return MariaDBServer(
        host=HOST, port=port, database=DATABASE, user=APP_USER, password=appPassword,
        superuser="root", superuserPassword=rootPassword, dataDir=dataDir, folder=folder,
        socket=sock, pidFile=pidFile, daemon=daemon, stop=stopper)


# --- Firebird --------------------------------------------------------------

FIREBIRD_SUPERUSER = "SYSDBA"
FIREBIRD_APP_USER = "APP"


def firebirdLibDir() -> str:
    """Firebird's own folder (plugins, intl, firebird.msg)."""
    found = sorted(glob.glob("/usr/lib/*/firebird/3.0")) + sorted(glob.glob("/usr/lib/firebird/3.0"))
    if not found:
        raise FileNotFoundError("Firebird 3.0 not found: run scripts/install-test-servers")
    return found[0]


def _firebirdLoadSql(path: str) -> str:
    return (
        f"CREATE TABLE {TABLE} (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL);\n"
        "COMMIT;\n"
        "SET TERM ^ ;\n"
        "EXECUTE BLOCK AS DECLARE i INTEGER = 1; BEGIN\n"
        f"  WHILE (i <= {ROW_COUNT}) DO BEGIN\n"
        f"    INSERT INTO {TABLE} (id, name) VALUES (:i, 'item ' || :i); i = i + 1;\n"
        "  END\nEND^\n"
        "SET TERM ; ^\n"
        "COMMIT;\n")


@define
class FirebirdDatabase:
    """A local Firebird file, used embedded (no server, no password)."""
    path: str
    user: str
    folder: str
    stop: _Stopper = field(repr=False)

    def env(self) -> dict[str, str]:
        return _baseEnv()

    async def query(self, statement: str) -> ProcessResult:
        return await runProcess(["isql-fb", "-q", "-b", "-user", self.user, self.path],
                                self.env(), statement)

    async def sql(self, statement: str) -> str:
        """Run SQL with isql-fb (embedded); its stdout."""
        return await checkProcess(["isql-fb", "-q", "-b", "-user", self.user, self.path],
                                  self.env(), statement)


async def startFirebird(testCase: Any) -> FirebirdDatabase:
    """Create a Firebird database file (embedded engine) with data."""
    folder = _makeFolder("fb")
    stopper = _Stopper(folder)
    testCase.addCleanup(stopper)
    path = os.path.join(folder, "app.fdb")
    db = FirebirdDatabase(path=path, user=FIREBIRD_SUPERUSER, folder=folder, stop=stopper)
    await checkProcess(["isql-fb", "-q", "-b", "-user", db.user], db.env(),
                       f"CREATE DATABASE '{path}' DEFAULT CHARACTER SET UTF8;\n")
    await db.sql(_firebirdLoadSql(path))
    return db


@define
class FirebirdServer:
    """A private Firebird SuperServer on 127.0.0.1:port (Srp auth).

    C{database} is the absolute path of the file on the server; remote
    clients connect to L{dsn} with C{ISC_USER}/C{ISC_PASSWORD} in the env.
    The database is owned by C{user} (APP); C{superuser} is SYSDBA.
    """
    host: str
    port: int
    database: str
    user: str
    password: str
    superuser: str
    superuserPassword: str
    dataDir: str
    folder: str
    root: str
    lockDir: str
    daemon: _Daemon = field(repr=False)
    stop: _Stopper = field(repr=False)

    def dsn(self, port: int | None = None, path: str | None = None) -> str:
        return f"{self.host}/{self.port if port is None else port}:{path or self.database}"

    def env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """Environment for remote clients (isql-fb, gbak) with ISC_USER/ISC_PASSWORD."""
        return _baseEnv(ISC_USER=user or self.user,
                        ISC_PASSWORD=self.password if password is None else password)

    def serverEnv(self) -> dict[str, str]:
        """Environment of this instance's engine (its root and lock folder)."""
        return _baseEnv(FIREBIRD=self.root, FIREBIRD_LOCK=self.lockDir)

    async def query(self, statement: str, user: str | None = None, password: str | None = None,
                    port: int | None = None, path: str | None = None) -> ProcessResult:
        """Run SQL with isql-fb over TCP as the app user (or C{user}); never raises."""
        return await runProcess(["isql-fb", "-q", "-b", self.dsn(port, path)],
                                self.env(user, password), statement)

    async def sql(self, statement: str) -> str:
        """Run SQL as SYSDBA over TCP; its stdout."""
        result = await self.query(statement, self.superuser, self.superuserPassword)
        if not result.ok:
            raise ProcessFailed(["isql-fb", self.dsn()], result)
        return result.out

    @property
    def pid(self) -> int | None:
        return self.daemon.pid


def firebirdServerBinary() -> str:
    return which("firebird", "/usr/sbin")


async def startFirebirdServer(testCase: Any) -> FirebirdServer:
    """Start a private Firebird server (package firebird3.0-server) on 127.0.0.1."""
    binary = firebirdServerBinary()
    folder = _makeFolder("fbs")
    stopper = _Stopper(folder)
    testCase.addCleanup(stopper)
    libDir = firebirdLibDir()
    root = os.path.join(folder, "root")
    lockDir = os.path.join(folder, "lock")
    dataDir = os.path.join(folder, "data")
    for d in (root, lockDir, dataDir):
        os.mkdir(d, 0o700)
    # FIREBIRD=root decides where firebird.conf, databases.conf, plugins.conf
    # and firebird.msg are read from; plugins and intl stay at their
    # compiled-in places but are linked too.
    for name in os.listdir(libDir):
        if name not in ("firebird.conf", "databases.conf"):
            os.symlink(os.path.join(libDir, name), os.path.join(root, name))
    port = freePort()
    security = os.path.join(dataDir, "security3.fdb")
    with open(os.path.join(root, "firebird.conf"), "w") as f:
        f.write(
            f"RemoteServicePort = {port}\n"
            f"RemoteBindAddress = {HOST}\n"
            f"SecurityDatabase = {security}\n"
            "AuthServer = Srp256, Srp\n"
            "AuthClient = Srp256, Srp\n"
            "UserManager = Srp\n"
            "WireCrypt = Enabled\n"
            "ServerMode = Super\n"
            "UdfAccess = None\n")
    with open(os.path.join(root, "databases.conf"), "w") as f:
        f.write(f"security.db = {security}\n")
    env = _baseEnv(FIREBIRD=root, FIREBIRD_LOCK=lockDir)
    sysdbaPassword, appPassword = randomPassword(), randomPassword()
    isql = ["isql-fb", "-q", "-b", "-user", FIREBIRD_SUPERUSER]
    await checkProcess(isql, env, f"CREATE DATABASE '{security}';\n")
    securitySql = "/usr/share/firebird/3.0/security.sql"
    await checkProcess([*isql, security, "-i", securitySql], env)
    await checkProcess([*isql, security], env, (
        f"CREATE OR ALTER USER {FIREBIRD_SUPERUSER} PASSWORD '{sysdbaPassword}' USING PLUGIN Srp;\n"
        f"CREATE OR ALTER USER {FIREBIRD_APP_USER} PASSWORD '{appPassword}' USING PLUGIN Srp;\n"
        "COMMIT;\n"))
    path = os.path.join(dataDir, "app.fdb")
    appIsql = ["isql-fb", "-q", "-b", "-user", FIREBIRD_APP_USER]
    await checkProcess(appIsql, env, f"CREATE DATABASE '{path}' DEFAULT CHARACTER SET UTF8;\n")
    await checkProcess([*appIsql, path], env, _firebirdLoadSql(path))
    daemon = _Daemon.spawn("firebird", [binary], env, folder, os.path.join(folder, "firebird.out"))
    stopper.add(daemon.stop)
    await daemon.waitUntilReady(port)
    return FirebirdServer(
        host=HOST, port=port, database=path, user=FIREBIRD_APP_USER, password=appPassword,
        superuser=FIREBIRD_SUPERUSER, superuserPassword=sysdbaPassword, dataDir=dataDir,
        folder=folder, root=root, lockDir=lockDir, daemon=daemon, stop=stopper)


# --- SQLite ----------------------------------------------------------------


@define
class SQLiteDatabase:
    path: str
    folder: str
    stop: _Stopper = field(repr=False)

    async def query(self, statement: str) -> ProcessResult:
        return await runProcess(["sqlite3", "-batch", "-bail", self.path], _baseEnv(), statement)

    async def sql(self, statement: str) -> str:
        """Run SQL with the sqlite3 shell; its stdout."""
        return await checkProcess(["sqlite3", "-batch", "-bail", self.path], _baseEnv(), statement)


async def startSQLite(testCase: Any) -> SQLiteDatabase:
    """A SQLite file with L{TABLE} holding L{ROW_COUNT} rows."""
    folder = _makeFolder("sqlite")
    stopper = _Stopper(folder)
    testCase.addCleanup(stopper)
    path = os.path.join(folder, "app.sqlite")
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            connection.executemany(f"INSERT INTO {TABLE} (id, name) VALUES (?, ?)",
                                   [(i, f"item {i}") for i in range(1, ROW_COUNT + 1)])
    finally:
        connection.close()
    return SQLiteDatabase(path=path, folder=folder, stop=stopper)
