"""
The registry of error codes, and the one exception type that carries them.

Every error a client can see has a code registered here, with what it means
and what a user should do about it; ``docs/protocol.md`` is checked against
this table by the tests.
"""

from __future__ import annotations

import json
from typing import Any

from attrs import field, frozen


@frozen
class ErrorCode:
    """A registered error: its wire code, its meaning and the action to take."""

    code: str
    meaning: str
    action: str


REGISTRY: dict[str, ErrorCode] = {}


def _register(code: str, meaning: str, action: str) -> str:
    if code in REGISTRY:
        raise ValueError(f"error code {code} registered twice")
    REGISTRY[code] = ErrorCode(code, meaning, action)
    return code


# Session and protocol
AUTH_REQUIRED = _register(
    "AUTH_REQUIRED",
    "The command needs an authenticated session and this connection has not "
    "authenticated.",
    "Send `auth` first; only `auth` and `capabilities` are answered before it.",
)
AUTH_FAILED = _register(
    "AUTH_FAILED",
    "The client id or the secret is wrong, or the server's operator disabled "
    "or removed the client or reset its secret (the server does not say which "
    "before `auth`; an authenticated session that is revoked gets this at its "
    "next command, and its connection is closed).",
    "Check `[client] id` and the `secret_file` in client.toml against what "
    "`backupremote server add-client` (or `server clients reset-secret`) made; "
    "if they are right, ask the server's operator (`backupremote server "
    "clients show ID`).",
)
AUTH_RATE_LIMITED = _register(
    "AUTH_RATE_LIMITED",
    "Too many failed authentications came from this address recently.",
    "Wait for the lockout to pass (the message says how long), then fix the "
    "credentials before retrying.",
)
ALREADY_AUTHENTICATED = _register(
    "ALREADY_AUTHENTICATED",
    "`auth` was sent on a connection that has authenticated, or while an "
    "earlier `auth` on it is still being checked.",
    "Wait for the first `auth` to answer; open a new connection to "
    "authenticate as another client.",
)
API_VERSION_UNSUPPORTED = _register(
    "API_VERSION_UNSUPPORTED",
    "The client speaks an API version the server does not support.",
    "Upgrade the client or the server so that they share a version from the "
    "supported list given in the message.",
)
UNKNOWN_COMMAND = _register(
    "UNKNOWN_COMMAND",
    "The server does not know this command.",
    "Check the command name against docs/protocol.md and the server version "
    "reported by `capabilities`.",
)
BAD_REQUEST = _register(
    "BAD_REQUEST",
    "The command's arguments are missing, malformed or of the wrong type.",
    "Send the arguments documented for the command in docs/protocol.md.",
)
INTERNAL_ERROR = _register(
    "INTERNAL_ERROR",
    "The server met an unexpected error; the details are in its log under "
    "the request id.",
    "Report the request id to the server's operator; the connection stays "
    "usable.",
)

# Licences
LICENSE_NO_TRUSTED_KEY = _register(
    "LICENSE_NO_TRUSTED_KEY",
    "The server trusts no licence issuer key, so it accepts no licence.",
    "On the server, add the issuer's public key to `trusted_issuers` in "
    "server.toml and restart it.",
)
LICENSE_MALFORMED = _register(
    "LICENSE_MALFORMED",
    "The licence token could not be read (missing, truncated or not a "
    "backupremote licence).",
    "Check the `license_file` in client.toml; reissue it with `backupremote "
    "license issue`.",
)
LICENSE_BAD_SIGNATURE = _register(
    "LICENSE_BAD_SIGNATURE",
    "The licence is not signed by any issuer this server trusts, or it was "
    "altered.",
    "Use a licence issued with a key whose public half the server trusts.",
)
LICENSE_CLIENT_MISMATCH = _register(
    "LICENSE_CLIENT_MISMATCH",
    "The licence was issued for another client id.",
    "Use the licence issued for this client id, or issue one with "
    "`--client-id` set to it.",
)
LICENSE_NOT_YET_VALID = _register(
    "LICENSE_NOT_YET_VALID",
    "The licence's validity starts in the future.",
    "Wait until its start date, or check the clocks of the issuer and the "
    "server.",
)
LICENSE_EXPIRED = _register(
    "LICENSE_EXPIRED",
    "The licence has expired.",
    "Issue a new licence (`backupremote license issue`) and put it in the "
    "client's `license_file` (client.toml).",
)
LICENSE_FEATURE_MISSING = _register(
    "LICENSE_FEATURE_MISSING",
    "The licence does not include the feature this command needs.",
    "Issue a licence with the named feature (`backupremote license issue "
    "--feature ...`).",
)

# Database configurations
VALIDATION_FAILED = _register(
    "VALIDATION_FAILED",
    "Some fields of the request are invalid; `details.fields` names each one "
    "with what is wrong. Nothing was stored.",
    "Fix the named fields and send the request again.",
)
NOT_FOUND = _register(
    "NOT_FOUND",
    "No object this client may see has that id: it does not exist (it may have "
    "been deleted), or it belongs to another client (the answer is the same).",
    "List the objects again (`backupremote db list`) and use a current id.",
)
CONFLICT = _register(
    "CONFLICT",
    "The request conflicts with the current state: the object changed since "
    "it was read (stale version), the name is taken, or a run is in progress.",
    "Read the object again and retry with its current version, choose another "
    "name, or wait for the run to end.",
)

# Database connection tests and preflight findings
DB_AUTH_FAILED = _register(
    "DB_AUTH_FAILED",
    "The database refused the user name or password of the configuration.",
    "Update the configuration's user or password (`backupremote db update ID "
    "--password-stdin`).",
)
HOST_UNREACHABLE = _register(
    "HOST_UNREACHABLE",
    "The server could not reach the database host and port (refused, no "
    "route, or the name does not resolve).",
    "Check host and port in the configuration and that the database listens "
    "there, as seen from the backupremote server.",
)
DATABASE_NOT_FOUND = _register(
    "DATABASE_NOT_FOUND",
    "The database (or database file) named in the configuration does not "
    "exist or is not a database.",
    "Check the database name or path in the configuration.",
)
PERMISSION_DENIED = _register(
    "PERMISSION_DENIED",
    "The database or its file exists but the configured user (or the server's "
    "OS account) may not read it.",
    "Grant the user read access to everything it must dump, or fix the file's "
    "permissions on the server.",
)
DB_ERROR = _register(
    "DB_ERROR",
    "The database answered with an error the server does not classify; the "
    "message quotes it.",
    "Read the quoted database error and fix its cause on the database side.",
)
TOOL_MISSING = _register(
    "TOOL_MISSING",
    "A program the server needs for this engine (client, dump or restore "
    "tool) is not installed or not in the server's tool path.",
    "Install the engine's client tools on the server (see docs/operations.md) "
    "or add their folder to `tool_path` in server.toml.",
)
TOOL_TOO_OLD = _register(
    "TOOL_TOO_OLD",
    "The installed dump tool is older than the database server, so its dump "
    "could not be trusted.",
    "Install the dump tool of the database's major version (or newer) on the "
    "backupremote server.",
)
COMPRESSION_UNAVAILABLE = _register(
    "COMPRESSION_UNAVAILABLE",
    "The requested compression needs a program the server does not have.",
    "Choose a compression that `capabilities` lists, or install its program "
    "(zstd, pigz/gzip, xz) on the server.",
)
TEMP_NOT_WRITABLE = _register(
    "TEMP_NOT_WRITABLE",
    "The server cannot write its staging folder in the OS temp folder.",
    "On the server, make the OS temp folder (TMPDIR) writable by the "
    "backupremote account.",
)
DISK_SPACE_LOW = _register(
    "DISK_SPACE_LOW",
    "The OS temp folder on the server has less free space than the backup is "
    "estimated to need.",
    "Free space in the server's temp folder, point TMPDIR to a larger disk, "
    "or choose a stronger compression.",
)

# Runs
CAPACITY_EXCEEDED = _register(
    "CAPACITY_EXCEEDED",
    "The server is at a limit its operator set: as many backups running and "
    "queued, or as many transfers, as it allows.",
    "Retry later (a backup with the same runId: it stays idempotent), or ask "
    "the operator to raise `[runs] max_concurrent_runs`/`max_queued_runs` or "
    "`[limits] max_concurrent_transfers`/`max_transfers_per_client`.",
)
DUMP_FAILED = _register(
    "DUMP_FAILED",
    "The database's dump tool failed; the message quotes its last error "
    "lines.",
    "Read the quoted error (a changed password, missing rights, a full "
    "database disk...), fix it, then run again.",
)
COMPRESSION_FAILED = _register(
    "COMPRESSION_FAILED",
    "The compressor failed while compressing the dump.",
    "Check the server's log for the compressor's error; try another "
    "compression.",
)
VERIFICATION_FAILED = _register(
    "VERIFICATION_FAILED",
    "The finished artifact did not pass verification (unreadable, wrong "
    "checksum, or the engine's check failed); it was not offered.",
    "Run the backup again; if it fails again, check the server's disk and "
    "the database's health.",
)
SCRIPT_FAILED = _register(
    "SCRIPT_FAILED",
    "The post-script failed or timed out; the artifact itself is complete and "
    "kept.",
    "Read the script's output in the run status, fix the script on the "
    "server, and download the artifact as usual.",
)
DISK_FULL = _register(
    "DISK_FULL",
    "The server's temp folder ran out of space during the backup; the partial "
    "files were removed.",
    "Free space in the server's temp folder (or point TMPDIR to a larger "
    "disk), then run again.",
)
INTERRUPTED = _register(
    "INTERRUPTED",
    "The server stopped (crash or restart) while the run was in progress; its "
    "partial files were removed.",
    "Run the backup again with a new runId.",
)
SCRIPT_NOT_ALLOWED = _register(
    "SCRIPT_NOT_ALLOWED",
    "The post-script named in the options is not in the server's allowlist "
    "folder (or the server has none).",
    "Use the name of an executable file in the server's `post_scripts_dir`, "
    "or ask its operator to add the script there.",
)
ARTIFACT_EXPIRED = _register(
    "ARTIFACT_EXPIRED",
    "The run's artifact is gone from the server's staging: it was released or "
    "its time to live ran out.",
    "Run the backup again to make a new artifact.",
)
STAGING_FULL = _register(
    "STAGING_FULL",
    "The server's staging folder holds as much as its operator allows "
    "(`[staging] max_bytes`).",
    "Download and release finished artifacts (`backupremote release RUNID`), "
    "or ask the operator to raise the cap.",
)
CANCELLED = _register(
    "CANCELLED",
    "The run was cancelled on request; its partial files were removed.",
    "Nothing to do, or start a new run.",
)

# Client side: errors raised before or instead of a server answer
TLS_FINGERPRINT_MISMATCH = _register(
    "TLS_FINGERPRINT_MISMATCH",
    "The server's certificate does not have the pinned SHA-256 fingerprint "
    "(or any of them).",
    "If the server's certificate was renewed, get its fingerprint from the "
    "server's operator (`backupremote server fingerprint`) over a channel you "
    "trust and pin it in client.toml, `fingerprints = [\"OLD\", \"NEW\"]` "
    "while a rotation is under way; otherwise you may be talking to another "
    "machine: do not proceed.",
)
TLS_FAILED = _register(
    "TLS_FAILED",
    "The TLS handshake failed (certificate not trusted, protocol too old, or "
    "a client certificate was required).",
    "Check the CA file or fingerprint in client.toml, and the client "
    "certificate if the server requires mutual TLS.",
)
CONNECTION_FAILED = _register(
    "CONNECTION_FAILED",
    "The server could not be reached, or it closed the connection.",
    "Check that the server runs and that `[server] address` in client.toml "
    "names its address and port.",
)
TIMEOUT = _register(
    "TIMEOUT",
    "The operation did not finish in the time allowed.",
    "Retry; if it persists, check the network and the server's load.",
)
CONFIG_INVALID = _register(
    "CONFIG_INVALID",
    "A local configuration file or command-line value is invalid.",
    "Fix the value named in the message.",
)

# Destinations (client side): delivering an artifact to its final places
DESTINATION_UNREACHABLE = _register(
    "DESTINATION_UNREACHABLE",
    "The destination's server could not be reached, or the connection to it "
    "was lost during the operation; no file was put under its final name.",
    "Check that the destination's server runs and that the destination's URL "
    "names its host and port (`backupremote dest test NAME`); the delivery is "
    "retried (`backupremote queue` says when).",
)
DESTINATION_AUTH_FAILED = _register(
    "DESTINATION_AUTH_FAILED",
    "The destination's server refused the user name, password or key.",
    "Check the user in the destination's URL and its password or key file; "
    "change them with `backupremote dest update NAME --password-stdin` or "
    "`--key-file`, then `backupremote dest test NAME`.",
)
DESTINATION_IDENTITY_MISMATCH = _register(
    "DESTINATION_IDENTITY_MISMATCH",
    "The destination's server did not prove the pinned identity: its SSH host "
    "key or its TLS certificate is not the pinned or trusted one (or none is "
    "pinned).",
    "Get the server's host key fingerprint or certificate from its operator "
    "over a channel you trust and pin it (`backupremote dest update NAME "
    "--host-key SHA256:...`, `--fingerprint AB:CD:...` or `--ca-file`); "
    "otherwise you may be talking to another machine: do not proceed.",
)
DESTINATION_REFUSED = _register(
    "DESTINATION_REFUSED",
    "The destination's server refused an operation: the folder is missing or "
    "not writable by that user, or the name is not allowed; the message "
    "quotes its answer.",
    "Create the folder or grant the user write access to it, then test the "
    "destination again (`backupremote dest test NAME`).",
)
DESTINATION_FULL = _register(
    "DESTINATION_FULL",
    "The destination ran out of space or quota while a file was being put; "
    "the partial copy was removed where the server still allowed it.",
    "Free space on the destination or remove old backups from it (`backupremote "
    "dest prune NAME --dry-run` shows what its retention would remove); the "
    "delivery is retried.",
)
DESTINATION_NOT_FOUND = _register(
    "DESTINATION_NOT_FOUND",
    "The destination holds no file of that name.",
    "List the destination's files again; the file may have been removed by "
    "someone else or by retention.",
)
DESTINATION_VERIFY_FAILED = _register(
    "DESTINATION_VERIFY_FAILED",
    "The copy read back from the destination differs in size or SHA-256 from "
    "the local artifact; it was removed and never put under its final name.",
    "Nothing to do for a one-off (the delivery is retried; `backupremote "
    "queue` shows it); if it repeats, check the destination's storage and "
    "anything that rewrites files on the way (text-mode transfers, filters, "
    "antivirus).",
)

# Notifications (client side): email and webhook alerts
NOTIFICATION_FAILED = _register(
    "NOTIFICATION_FAILED",
    "A notification could not be sent: the mail server or the webhook's "
    "receiver could not be reached, refused the connection's security, the "
    "login or the message; the message quotes its answer.",
    "Check `[notify.email]` or `[notify.webhook]` in client.toml (host, port, "
    "user, the password or secret file, the certificate to trust) against "
    "the receiver; a refusal that may pass is retried before this is logged.",
)

# Checks (client side): what `backupremote check` finds besides the errors above
LICENSE_EXPIRING = _register(
    "LICENSE_EXPIRING",
    "The licence is valid but expires soon: within 30 days (the message "
    "gives the date and the days left).",
    "Issue a new licence before that date (`backupremote license issue`) "
    "and put it in the client's `license_file` (client.toml); the server "
    "reads it at the next login.",
)
CLOCK_SKEW = _register(
    "CLOCK_SKEW",
    "The client's clock and the server's differ: by more than 2 seconds (a "
    "warning) or more than 5 minutes (a blocker: licence dates, schedule "
    "slots and the times in both daemons' logs stop agreeing).",
    "Synchronise both machines' clocks with NTP (chrony, systemd-timesyncd: "
    "`timedatectl set-ntp true`), then run `backupremote check` again.",
)


def lookup(code: str) -> ErrorCode:
    """The registry entry for C{code}; unregistered codes read as internal."""
    return REGISTRY.get(code, REGISTRY[INTERNAL_ERROR])


@frozen(auto_exc=True)
class BackupRemoteError(Exception):
    """
    An error with a registry code, raised on either side of the wire.

    On the server a responder raises it and the client receives an AMP error
    answer carrying the same code, message and request id; the client raises
    it again from the answer.
    """

    code: str
    message: str
    requestId: str | None = None
    details: dict[str, Any] = field(factory=dict)
    #: An action that fits this case better than the code's, where the side
    #: that raises it knows one (never sent: the wire carries the code).
    hint: str | None = field(default=None, kw_only=True)

    def __str__(self) -> str:
        suffix = f" (request {self.requestId})" if self.requestId else ""
        return f"{self.code}: {self.message}{suffix}"

    @property
    def action(self) -> str:
        """What a user should do about it: the hint, else the registry's."""
        return self.hint or lookup(self.code).action

    def toDescription(self, requestId: str | None) -> bytes:
        """The JSON C{_error_description} of the AMP error answer."""
        body: dict[str, Any] = {
            "errorCode": self.code,
            "errorMessage": self.message,
            "requestId": requestId or self.requestId,
        }
        if self.details:
            body["details"] = self.details
        return json.dumps(body, sort_keys=True).encode("utf-8")

    @classmethod
    def fromDescription(cls, code: bytes, description: bytes) -> BackupRemoteError:
        """Rebuild the error from an AMP error answer (never fails)."""
        codeText = code.decode("utf-8", "replace")
        try:
            body = json.loads(description)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return cls(codeText, description.decode("utf-8", "replace"))
        details = body.get("details")
        return cls(
            str(body.get("errorCode") or codeText),
            str(body.get("errorMessage") or ""),
            body.get("requestId"),
            details if isinstance(details, dict) else {},
        )
