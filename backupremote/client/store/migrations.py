"""
The client store's schema: each entry moves it from version ``index`` to
``index + 1`` (SQLite's C{user_version}), in one transaction.

Append a migration for new tables or columns; never change one that was
released, since the stores of users have run it already.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # Version 1: jobs (backupremote.client.jobs), one row per run this
    # client drives, the log of their steps, and a receipt per delivery.
    """
    CREATE TABLE jobs (
        runId TEXT PRIMARY KEY,
        server TEXT NOT NULL,
        databaseConfigId TEXT,
        options TEXT,
        scheduleId TEXT,
        fireTime TEXT,
        goal TEXT NOT NULL,
        state TEXT NOT NULL,
        downloadFolder TEXT,
        keepDownload INTEGER NOT NULL,
        destinations TEXT NOT NULL,
        status TEXT,
        artifact TEXT,
        artifactPath TEXT,
        failedStep TEXT,
        errorCode TEXT,
        errorMessage TEXT,
        createdAt TEXT NOT NULL,
        updatedAt TEXT NOT NULL
    );
    CREATE INDEX jobs_state ON jobs (state);
    CREATE INDEX jobs_schedule ON jobs (scheduleId, fireTime);
    CREATE TABLE job_steps (
        runId TEXT NOT NULL REFERENCES jobs (runId) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        at TEXT NOT NULL,
        detail TEXT,
        PRIMARY KEY (runId, seq)
    );
    CREATE TABLE receipts (
        runId TEXT NOT NULL REFERENCES jobs (runId) ON DELETE CASCADE,
        destination TEXT NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        method TEXT NOT NULL,
        verifiedAt TEXT NOT NULL,
        PRIMARY KEY (runId, destination)
    );
    """,
    # Version 2: schedules (backupremote.client.schedules): each schedule
    # as JSON with its revision, the scheduler's state of each (the next
    # slot it has not handled, a slot queued behind an active run), and what
    # became of every slot (started, missed, skipped, queued).
    """
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        revision INTEGER NOT NULL,
        definition TEXT NOT NULL,
        createdAt TEXT NOT NULL,
        updatedAt TEXT NOT NULL
    );
    CREATE TABLE schedule_state (
        scheduleId TEXT PRIMARY KEY REFERENCES schedules (id) ON DELETE CASCADE,
        revision INTEGER NOT NULL,
        nextFire TEXT,
        queuedFire TEXT,
        lastFire TEXT,
        lastRunId TEXT,
        updatedAt TEXT NOT NULL
    );
    CREATE TABLE schedule_fires (
        scheduleId TEXT NOT NULL,
        fireTime TEXT NOT NULL,
        runId TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        recordedAt TEXT NOT NULL,
        PRIMARY KEY (scheduleId, fireTime)
    );
    CREATE INDEX schedule_fires_run ON schedule_fires (runId);
    """,
    # Version 3: named destinations (backupremote.client.destinations.registry),
    # each with its secret sealed by the client's secrets.key, and the
    # delivery queue (backupremote.client.delivery): one item per run and
    # destination, moved one step per transaction.
    """
    CREATE TABLE destinations (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        revision INTEGER NOT NULL,
        definition TEXT NOT NULL,
        secret TEXT,
        createdAt TEXT NOT NULL,
        updatedAt TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        runId TEXT NOT NULL,
        server TEXT NOT NULL,
        destinationId TEXT NOT NULL,
        destination TEXT NOT NULL,
        scheduleId TEXT,
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        upload TEXT,
        errorCode TEXT,
        reason TEXT,
        nextAttemptAt TEXT,
        method TEXT,
        verifiedAt TEXT,
        prunedAt TEXT,
        createdAt TEXT NOT NULL,
        updatedAt TEXT NOT NULL,
        UNIQUE (runId, destinationId)
    );
    CREATE INDEX deliveries_state ON deliveries (state, nextAttemptAt);
    CREATE INDEX deliveries_destination ON deliveries (destinationId, state);
    """,
    # 4: schedule creations and updates refused, by operation, for the daemon's
    # metrics (the CLI refuses them, in a process with no metrics of its own)
    """
    CREATE TABLE schedule_rejections (
        op TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    );
    """,
    # 5: resumable uploads (backupremote.client.delivery.journal): the upload a
    # delivery's attempt began (an S3 multipart upload: JSON of its UploadState
    # without its parts), and each part the server confirmed, one row each
    """
    ALTER TABLE deliveries ADD COLUMN resume TEXT;
    CREATE TABLE delivery_parts (
        deliveryId TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        uploadId TEXT NOT NULL,
        number INTEGER NOT NULL,
        start INTEGER NOT NULL,
        length INTEGER NOT NULL,
        etag TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (deliveryId, number)
    );
    """,
]
