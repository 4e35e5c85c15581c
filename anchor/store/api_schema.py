"""The read API's table (same on SQLite and PostgreSQL), created by ``migrate_api``.

- ``api_tokens``: one row per API token ever issued. Only the SHA-256 of the token's 32
  random bytes is kept (``token_hash``, 32 bytes, unique), never the token itself: a copy of
  the store does not let anyone call the API. ``token_id`` is a short public handle (the
  first 8 hex digits of the hash) for listings; ``user_name`` and ``role`` (``viewer`` or
  ``officer``) say who calls and what they may do; ``revoked_ms`` is set once, never unset.

Versioned on its own (``api_schema_version``), like the alert tables.
"""

from __future__ import annotations

from anchor.errors import StoreError
from anchor.store.db import Database, Dialect

API_SCHEMA_VERSION = 1
API_LOCK_ID = 0x70617069  # "papi": advisory lock key of the token table's writers

_TYPES = {
    Dialect.SQLITE: {"BIG": "INTEGER", "BLOB": "BLOB"},
    Dialect.POSTGRES: {"BIG": "BIGINT", "BLOB": "BYTEA"},
}

_V1 = """
CREATE TABLE IF NOT EXISTS api_schema_version (version {BIG} NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash {BLOB} PRIMARY KEY,
    token_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'officer')),
    created_ms {BIG} NOT NULL,
    revoked_ms {BIG}
);
CREATE INDEX IF NOT EXISTS api_tokens_by_user ON api_tokens (user_name, revoked_ms);
"""


def migrate_api(db: Database) -> None:
    """Create the token table if missing, in one transaction; never drops data."""
    with db.transaction() as tx:
        tx.lock(API_LOCK_ID)
        for statement in _V1.format(**_TYPES[db.dialect]).split(";"):
            if statement.strip():
                tx.execute(statement)
        row = tx.one("SELECT version FROM api_schema_version")
        if row is None:
            tx.execute("INSERT INTO api_schema_version (version) VALUES (?)", (API_SCHEMA_VERSION,))
        elif row[0] > API_SCHEMA_VERSION:
            raise StoreError(
                f"API tables are at version {row[0]}, newer than this anchor ({API_SCHEMA_VERSION})"
            )
