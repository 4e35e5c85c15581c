"""The gateway's one durable file: chain heads, the outbox and counters, in SQLite.

Chain heads and the outbox live in the same database so that assigning a device's next ``seq``
and storing the signed event are one transaction: after any crash (``kill -9``, power loss) a
sequence number was either used and its event is in the outbox, or neither happened. The file
is opened in WAL mode with ``synchronous=FULL``: a committed transaction is on disk.

The database is bound to one warehouse, gateway and signing key on first open; opening it with
another identity is refused, so a misconfigured gateway cannot fork its devices' chains.
The queue is never recreated or truncated on reconnect or restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError, StoreError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chain (
    device TEXT PRIMARY KEY, seq INTEGER NOT NULL, head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    wire BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Identity:
    warehouse: str
    gateway: str
    key_id: str


class GatewayStore:
    """Owns the SQLite connection. Use from one thread only (the service's main loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def open(self, identity: Identity) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open gateway state {self.path}: {exc}") from exc
        self._conn = conn
        self._bind(identity)

    def _bind(self, identity: Identity) -> None:
        want = {
            "schema_version": str(SCHEMA_VERSION),
            "warehouse": identity.warehouse,
            "gateway": identity.gateway,
            "key_id": identity.key_id,
        }
        with self.transaction() as conn:
            have = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not have:
                conn.executemany("INSERT INTO meta VALUES (?, ?)", want.items())
                return
        wrong = [
            f"{k}: file has {have.get(k)!r}, config has {v!r}"
            for k, v in want.items()
            if have.get(k) != v
        ]
        if wrong:
            self.close()
            raise GatewayError(
                f"state database {self.path} belongs to another gateway identity: "
                + "; ".join(wrong)
            )

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("gateway store is not open")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error; write errors raise StoreError."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot begin a transaction on {self.path}: {exc}") from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"commit failed on {self.path}: {exc}") from exc

    def bump(self, conn: sqlite3.Connection, name: str, by: int = 1) -> None:
        conn.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection for ``gateway status`` while the service runs."""
    if not path.exists():
        raise StoreError(f"no gateway state at {path}")
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read gateway state {path}: {exc}") from exc
