"""A thin, dialect-aware database handle: SQLite or PostgreSQL behind one small interface.

SQL in the anchor is written once with ``?`` placeholders and portable statements
(``INSERT … ON CONFLICT DO NOTHING``, window functions); ``Database`` rewrites placeholders for
PostgreSQL (psycopg 3) and provides ``transaction()`` and a cross-worker ``sequencer_lock``:
SQLite serialises writers with ``BEGIN IMMEDIATE``; PostgreSQL takes a transaction-scoped
advisory lock, so exactly one worker at a time assigns log positions.

SQLite is opened in WAL mode with ``synchronous=FULL``: a committed transaction is on disk.
"""

from __future__ import annotations

import enum
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anchor.errors import StoreError

SEQUENCER_LOCK_ID = 0x706C6467  # "pldg": the advisory lock key of the sequencer
CHAIN_LOCK_ID = 0x70636863  # "pchc": the advisory lock key of the per-device chain state

# A single-quoted SQL literal (``''`` escapes a quote), or one ``?`` / ``%`` outside literals.
_LITERAL_OR_MARK = re.compile(r"'(?:[^']|'')*'|[?%]")


class Dialect(enum.Enum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"


class Tx:
    """One open transaction. ``execute`` takes ``?`` placeholders in either dialect.

    Each ``execute`` returns a fresh cursor (sqlite3's and psycopg's ``Connection.execute``
    both do), so a result can still be iterated while further statements run.
    """

    def __init__(self, db: Database, conn: Any) -> None:
        self._db = db
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        return self._conn.execute(self._db.sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._db.sql(sql), [tuple(r) for r in rows])

    def lock(self, lock_id: int) -> None:
        """Hold the cross-worker lock ``lock_id`` until this transaction ends.

        PostgreSQL: ``pg_advisory_xact_lock``, which waits for any other holder. SQLite:
        nothing to do, ``BEGIN IMMEDIATE`` already holds the database's only write lock.
        """
        if self._db.dialect is Dialect.POSTGRES:
            self.execute("SELECT pg_advisory_xact_lock(?)", (lock_id,))

    def one(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = (
            Dialect.POSTGRES if url.startswith(("postgresql://", "postgres://")) else Dialect.SQLITE
        )
        self._conn: Any = None
        self._lock = threading.RLock()

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///").removeprefix("sqlite:"))

    def open(self) -> None:
        try:
            if self.dialect is Dialect.SQLITE:
                path = self.sqlite_path
                path.parent.mkdir(parents=True, exist_ok=True)
                conn: Any = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False, timeout=30
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            else:
                import psycopg  # the anchor extra; only PostgreSQL deployments need it

                conn = psycopg.connect(self.url, autocommit=True)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.redacted()}: {exc}") from exc
        except Exception as exc:  # psycopg's errors are not importable here
            raise StoreError(f"cannot open store {self.redacted()}: {exc}") from exc
        self._conn = conn

    def redacted(self) -> str:
        """The URL without a password, for messages and logs."""
        if "@" in self.url and "://" in self.url:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url

    def sql(self, text: str) -> str:
        """``text`` for this driver. psycopg: ``?`` → ``%s`` and ``%`` → ``%%`` (it reads
        ``%`` everywhere, even inside literals); a ``?`` inside a quoted literal is kept."""
        if self.dialect is Dialect.SQLITE:
            return text
        return _LITERAL_OR_MARK.sub(_psycopg_mark, text)

    def blob(self, value: Any) -> bytes:
        return bytes(value)

    @contextmanager
    def transaction(self, *, sequencer: bool = False) -> Iterator[Tx]:
        """A write transaction; with ``sequencer=True`` also the cross-worker sequencer lock."""
        if self._conn is None:
            raise StoreError("store is not open")
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if self.dialect is Dialect.SQLITE else "BEGIN")
            except Exception as exc:
                raise StoreError(f"cannot begin a transaction: {exc}") from exc
            tx = Tx(self, conn)
            try:
                if sequencer:
                    tx.lock(SEQUENCER_LOCK_ID)  # inside the try: a failure here rolls back
                yield tx
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                done = conn.execute("COMMIT")
            except Exception as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"commit failed: {exc}") from exc
            # PostgreSQL answers COMMIT of a transaction in which a statement failed (and the
            # caller caught the error) with a silent ROLLBACK: that must not look like success.
            if self.dialect is Dialect.POSTGRES and done.statusmessage != "COMMIT":
                raise StoreError(
                    f"transaction rolled back, not committed (server: {done.statusmessage}):"
                    " a statement in it failed"
                )

    def read(self) -> Tx:
        """Autocommit reads (each statement sees the latest committed state)."""
        if self._conn is None:
            raise StoreError("store is not open")
        return Tx(self, self._conn)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _psycopg_mark(match: re.Match[str]) -> str:
    text = match.group()
    return "%s" if text == "?" else text.replace("%", "%%")
