"""The anchor's schema and its migrations (same tables on SQLite and PostgreSQL).

``migrate`` brings a database to ``SCHEMA_VERSION`` inside one transaction and never drops
data. Tables:

- ``keys``: the gateway key registry; every change is also a key leaf in the log.
- ``events``: every verified event, by event id (stored once), its raw wire bytes and, once
  sequenced, its ``leaf_index``.
- ``quarantine``: every refused message: raw bytes, topic, reason code and text.
- ``chain_records``: GAP / FORK / TAMPER findings of the per-device chain check.
- ``chain_heads``: per device, the highest seq up to which the chain is complete.
- ``leaves``: leaf index → leaf hash (what proofs are built from; audit recomputes them).
- ``log_state``: the log size and its compact range (one row).
- ``checkpoints``: every signed checkpoint, with its cosigned note and ledger receipt.
"""

from __future__ import annotations

from anchor.errors import StoreError
from anchor.store.alerts_schema import migrate_alerts
from anchor.store.api_schema import migrate_api
from anchor.store.db import Database, Dialect, Tx
from anchor.store.loans_schema import migrate_loans
from pledgewatch.merkle import CompactRange

SCHEMA_VERSION = 1

_TYPES = {
    Dialect.SQLITE: {
        "BLOB": "BLOB",
        "SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIG": "INTEGER",
    },
    Dialect.POSTGRES: {
        "BLOB": "BYTEA",
        "SERIAL": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "BIG": "BIGINT",
    },
}

_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version {BIG} NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    warehouse TEXT NOT NULL,
    gateway TEXT NOT NULL,
    public_key {BLOB} NOT NULL,
    valid_from_ms {BIG} NOT NULL,
    valid_until_ms {BIG},
    enrolled_ms {BIG} NOT NULL,
    revoked_ms {BIG}
);
CREATE TABLE IF NOT EXISTS key_records (
    id {SERIAL},
    key_id TEXT NOT NULL,
    leaf {BLOB} NOT NULL,
    leaf_index {BIG} UNIQUE
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    warehouse TEXT NOT NULL,
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    seq {BIG} NOT NULL,
    prev TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts_ms {BIG} NOT NULL,
    wire {BLOB} NOT NULL,
    received_ms {BIG} NOT NULL,
    worker TEXT NOT NULL,
    leaf_index {BIG} UNIQUE
);
CREATE INDEX IF NOT EXISTS events_by_device ON events (gateway, device, seq);
CREATE INDEX IF NOT EXISTS events_unsequenced ON events (received_ms) WHERE leaf_index IS NULL;
CREATE TABLE IF NOT EXISTS quarantine (
    id {SERIAL},
    received_ms {BIG} NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    event_id TEXT,
    raw {BLOB} NOT NULL
);
CREATE TABLE IF NOT EXISTS chain_records (
    id {SERIAL},
    kind TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    seq_from {BIG} NOT NULL,
    seq_to {BIG} NOT NULL,
    event_ids TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_ms {BIG} NOT NULL,
    resolved_ms {BIG}
);
CREATE TABLE IF NOT EXISTS chain_heads (
    gateway TEXT NOT NULL,
    device TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    complete_seq {BIG} NOT NULL,
    complete_id TEXT NOT NULL,
    max_seq {BIG} NOT NULL,
    gap_since_ms {BIG},
    PRIMARY KEY (gateway, device)
);
CREATE TABLE IF NOT EXISTS leaves (
    leaf_index {BIG} PRIMARY KEY,
    leaf_hash {BLOB} NOT NULL
);
CREATE TABLE IF NOT EXISTS log_state (
    id {BIG} PRIMARY KEY,
    size {BIG} NOT NULL,
    compact {BLOB} NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size {BIG} PRIMARY KEY,
    root {BLOB} NOT NULL,
    note TEXT NOT NULL,
    created_ms {BIG} NOT NULL,
    cosigned_note TEXT,
    witnessed_ms {BIG},
    witness_error TEXT,
    ledger_receipt TEXT,
    anchored_ms {BIG},
    ledger_error TEXT
);
"""


def open_store(url: str) -> Database:
    """An open, migrated store (closed again if migrating fails): what every command uses."""
    db = Database(url)
    db.open()
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: Database) -> None:
    types = _TYPES[db.dialect]
    with db.transaction(sequencer=True) as tx:
        for statement in _V1.format(**types).split(";"):
            if statement.strip():
                tx.execute(statement)
        row = tx.one("SELECT version FROM schema_version")
        if row is None:
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise StoreError(f"store schema {row[0]} is newer than this anchor ({SCHEMA_VERSION})")
        _init_log_state(tx)
    migrate_alerts(db)
    migrate_loans(db)
    migrate_api(db)


def _init_log_state(tx: Tx) -> None:
    if tx.one("SELECT size FROM log_state WHERE id = 1") is None:
        tx.execute(
            "INSERT INTO log_state (id, size, compact) VALUES (1, 0, ?)",
            (CompactRange().to_bytes(),),
        )
