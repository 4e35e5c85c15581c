"""The alert tables (same on SQLite and PostgreSQL), created by ``migrate_alerts``.

- ``alerts``: one row per alert. At most one alert per ``fingerprint`` is not ``resolved``
  (a partial unique index enforces it); a condition that comes back after its alert was
  resolved opens a new alert. ``severity`` is the highest severity the alert reached;
  ``evidence`` is a JSON array of event ids.
- ``alert_transitions``: the history of every alert, one row per transition (opened,
  escalated, acknowledged, resolved), numbered ``n`` = 1, 2, … per alert, with the
  ``webhook_id`` its messages carry and a JSON ``snapshot`` of the alert after the
  transition (what the webhook body is built from, also on replay). ``routed`` = 1 once the
  transition's messages are in the outbox.
- ``webhook_outbox``: one row per message per endpoint: the exact body bytes, the attempt
  count and schedule, the last result; ``delivered_ms`` once a 2xx came back, ``dead`` = 1
  once the retry schedule ran out. Rows are never deleted by the deliverer.
- ``webhook_endpoints``: per endpoint name, what the deliverer learnt: disabled by a
  ``410 Gone`` (for the URL that answered it) and paused until a ``Retry-After``.

Versioned on their own (``alerts_schema_version``), so the alert tables can evolve without
touching the anchor's ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from anchor.errors import StoreError
from anchor.store.db import Database, Dialect

ALERTS_SCHEMA_VERSION = 1
ALERTS_LOCK_ID = 0x70616C74  # "palt": advisory lock key of the alert lifecycle and router

_TYPES = {
    Dialect.SQLITE: {"SERIAL": "INTEGER PRIMARY KEY AUTOINCREMENT", "BIG": "INTEGER"},
    Dialect.POSTGRES: {
        "SERIAL": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "BIG": "BIGINT",
    },
}

_V1 = """
CREATE TABLE IF NOT EXISTS alerts_schema_version (version {BIG} NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id {SERIAL},
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    category TEXT NOT NULL,
    severity {BIG} NOT NULL,
    state TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    loan_id TEXT,
    lot TEXT,
    device TEXT,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL,
    observed_ms {BIG} NOT NULL,
    opened_ms {BIG} NOT NULL,
    updated_ms {BIG} NOT NULL,
    resolved_ms {BIG},
    acked_by TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active_per_fingerprint
    ON alerts (fingerprint) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, warehouse);
CREATE TABLE IF NOT EXISTS alert_transitions (
    id {SERIAL},
    alert_id {BIG} NOT NULL,
    n {BIG} NOT NULL,
    kind TEXT NOT NULL,
    severity {BIG} NOT NULL,
    previous_severity {BIG},
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    by_name TEXT,
    at_ms {BIG} NOT NULL,
    webhook_id TEXT NOT NULL UNIQUE,
    snapshot TEXT NOT NULL,
    routed {BIG} NOT NULL,
    UNIQUE (alert_id, n)
);
CREATE INDEX IF NOT EXISTS alert_transitions_unrouted ON alert_transitions (id) WHERE routed = 0;
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id {SERIAL},
    message_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    transition_id {BIG} NOT NULL,
    body TEXT NOT NULL,
    replay {BIG} NOT NULL,
    created_ms {BIG} NOT NULL,
    attempts {BIG} NOT NULL,
    next_attempt_ms {BIG} NOT NULL,
    last_attempt_ms {BIG},
    last_status {BIG},
    last_error TEXT,
    delivered_ms {BIG},
    dead {BIG} NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (next_attempt_ms, id)
    WHERE delivered_ms IS NULL AND dead = 0;
CREATE INDEX IF NOT EXISTS webhook_outbox_by_message ON webhook_outbox (message_id, endpoint);
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    disabled_ms {BIG},
    disabled_reason TEXT,
    paused_until_ms {BIG}
);
"""


def migrate_alerts(db: Database) -> None:
    """Create the alert tables if missing, in one transaction; never drops data."""
    with db.transaction() as tx:
        tx.lock(ALERTS_LOCK_ID)
        for statement in _V1.format(**_TYPES[db.dialect]).split(";"):
            if statement.strip():
                tx.execute(statement)
        row = tx.one("SELECT version FROM alerts_schema_version")
        if row is None:
            tx.execute(
                "INSERT INTO alerts_schema_version (version) VALUES (?)", (ALERTS_SCHEMA_VERSION,)
            )
        elif row[0] > ALERTS_SCHEMA_VERSION:
            raise StoreError(
                f"alert tables are at version {row[0]}, newer than this anchor "
                f"({ALERTS_SCHEMA_VERSION})"
            )
