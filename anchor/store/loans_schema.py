"""Tables of the loan book and the bank's release tokens (same SQL on SQLite and PostgreSQL).

``migrate_loans`` only ever runs ``CREATE … IF NOT EXISTS``: it is safe to call on every start
and never touches existing rows. Tables:

- ``loan_book_versions``: one row per version of the book, with ``valid_from_ms`` (the time
  from which that version is the book in force) and a one-line ``note`` of what changed.
- ``loan_book_loans``, ``loan_book_pledges``, ``loan_book_prices``: the rows of each version,
  in the order of the imported CSV (``position``). A version is never changed once written;
  an update (a repayment) copies the rows into a new version. Money and ratios are decimal
  TEXT (``1000.00``), never REAL, so no value is rounded through a float; dates are ISO TEXT.
- ``release_tokens``: every release token the bank issued, its signed wire bytes and, for
  queries, its fields; ``seq`` is the issue order.
"""

from __future__ import annotations

from anchor.store.db import Database, Dialect

# The advisory lock key that serialises writers of the loan book and release tokens ("plon").
LOANBOOK_LOCK_ID = 0x706C6F6E

_TYPES = {
    Dialect.SQLITE: {"BIG": "INTEGER", "BLOB": "BLOB"},
    Dialect.POSTGRES: {"BIG": "BIGINT", "BLOB": "BYTEA"},
}

_TABLES = """
CREATE TABLE IF NOT EXISTS loan_book_versions (
    version {BIG} PRIMARY KEY,
    valid_from_ms {BIG} NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS loan_book_loans (
    version {BIG} NOT NULL REFERENCES loan_book_versions (version),
    position {BIG} NOT NULL,
    loan_id TEXT NOT NULL,
    borrower TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    currency TEXT NOT NULL,
    outstanding TEXT NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    pledge_type TEXT NOT NULL,
    advance_rate TEXT NOT NULL,
    warning_ratio TEXT NOT NULL,
    liquidation_ratio TEXT NOT NULL,
    min_value TEXT NOT NULL,
    PRIMARY KEY (version, loan_id)
);
CREATE TABLE IF NOT EXISTS loan_book_pledges (
    version {BIG} NOT NULL REFERENCES loan_book_versions (version),
    position {BIG} NOT NULL,
    loan_id TEXT NOT NULL,
    lot TEXT,
    sku TEXT NOT NULL,
    qty {BIG} NOT NULL,
    PRIMARY KEY (version, position)
);
CREATE TABLE IF NOT EXISTS loan_book_prices (
    version {BIG} NOT NULL REFERENCES loan_book_versions (version),
    position {BIG} NOT NULL,
    sku TEXT NOT NULL,
    price_date TEXT NOT NULL,
    unit_price TEXT NOT NULL,
    PRIMARY KEY (version, position)
);
CREATE INDEX IF NOT EXISTS loan_book_versions_by_time
    ON loan_book_versions (valid_from_ms, version);
CREATE TABLE IF NOT EXISTS release_tokens (
    seq {BIG} PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    warehouse TEXT NOT NULL,
    loan_id TEXT NOT NULL,
    lot TEXT NOT NULL,
    qty {BIG} NOT NULL,
    issued_ms {BIG} NOT NULL,
    expires_ms {BIG} NOT NULL,
    book_version {BIG} NOT NULL,
    wire {BLOB} NOT NULL
);
CREATE INDEX IF NOT EXISTS release_tokens_by_lot ON release_tokens (loan_id, lot, expires_ms);
"""


def migrate_loans(db: Database) -> None:
    """Create the loan-book and release-token tables if they are missing (one transaction)."""
    with db.transaction() as tx:
        tx.lock(LOANBOOK_LOCK_ID)
        for statement in _TABLES.format(**_TYPES[db.dialect]).split(";"):
            if statement.strip():
                tx.execute(statement)
