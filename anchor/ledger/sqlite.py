"""The embedded ledger: an append-only, hash-chained table in one SQLite file (the default).

URL: ``sqlite:///abs/path/ledger.db`` or ``sqlite:relative/path.db`` (relative to the working
directory), with an optional ``?timeout_s=<seconds>`` (how long to wait for another process's
write lock; default 10).

Each entry is ``(height, prev_hash, time_ms, payload, entry_hash)`` with

    entry_hash = SHA-256(SQLITE_ENTRY_DOMAIN || prev_hash (32 bytes) || height (8 bytes, BE) ||
                         time_ms (8 bytes, BE) || payload)

(``pledgewatch.anchoring.sqlite_entry_hash``; ``SQLITE_ENTRY_DOMAIN`` is
``b"pledgewatch/sqlite-ledger/v1\\n"``). The genesis entry has height 0, ``prev_hash`` = 32 zero
bytes, ``payload`` = ``GENESIS_PAYLOAD`` (``b"pledgewatch/sqlite-ledger/v1 genesis\\n"``) and
the creation time; the ledger id is its entry hash in hex. Entry ``n`` (n ≥ 1) has
``prev_hash`` = entry hash of ``n - 1`` and ``time_ms`` = max(wall clock in ms, previous
``time_ms``), so times never go backwards along the chain.

Durability and sharing: WAL journal, ``synchronous=FULL`` (a returned receipt survives power
loss), every append is one ``BEGIN IMMEDIATE`` transaction that reads the tip and inserts the
next entry, so several processes can append to one file without forking the chain. Triggers
refuse UPDATE and DELETE; that only stops accidents, anyone holding the file can drop them.
The real protection is the chain: ``check()`` recomputes the entry hashes from genesis up to
the receipt's height (once per open ledger, see ``SqliteLedger.check``), so a changed byte in
a receipt's entry or below it, or a rewritten chain, shows up as ``ProofError``.

The file is marked with ``PRAGMA application_id`` = ``APPLICATION_ID`` and
``PRAGMA user_version`` = ``SCHEMA_VERSION``; any other SQLite file is refused.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from anchor.ledger.errors import LedgerConfigError, LedgerError
from pledgewatch.anchoring import LedgerReceipt, sqlite_entry_hash
from pledgewatch.errors import ProofError

BACKEND = "sqlite"
GENESIS_PAYLOAD = b"pledgewatch/sqlite-ledger/v1 genesis\n"
ZERO_HASH = bytes(32)
APPLICATION_ID = 0x50574C47  # "PWLG"
SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 4096
_MAX_INT64 = 2**63 - 1

_SCHEMA = (
    """CREATE TABLE ledger_entries (
        height INTEGER PRIMARY KEY CHECK (height >= 0),
        prev_hash BLOB NOT NULL CHECK (length(prev_hash) = 32),
        time_ms INTEGER NOT NULL CHECK (time_ms >= 0),
        payload BLOB NOT NULL,
        entry_hash BLOB NOT NULL UNIQUE CHECK (length(entry_hash) = 32)
    ) STRICT""",
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, 'pledgewatch ledger is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, 'pledgewatch ledger is append-only: DELETE refused'); END""",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_COLUMNS = "height, prev_hash, time_ms, payload, entry_hash"


@dataclass(frozen=True, slots=True)
class SqliteLedgerConfig:
    """Where the ledger file lives and how long to wait for another writer's lock."""

    path: Path
    busy_timeout_s: float = 10.0


def parse_sqlite_url(url: str) -> SqliteLedgerConfig:
    """Parse ``sqlite:///abs/path`` or ``sqlite:relative/path`` (no I/O); every problem is
    reported in one ``LedgerConfigError``."""
    parts = urlsplit(url)
    problems: list[str] = []
    if parts.scheme.lower() != "sqlite":
        problems.append(f"scheme: got {parts.scheme!r}, want 'sqlite'")
    if parts.netloc:
        problems.append(
            f"host: got {parts.netloc!r}, want none (sqlite:///abs/path or sqlite:rel/path)"
        )
    if parts.fragment:
        problems.append("fragment: want none")
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        problems.append(f"path: got {path!r}, want a file path")
    if "\x00" in path:
        problems.append("path: contains a NUL byte")
    timeout_s = 10.0
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        query = {}
        problems.append(f"query: cannot parse {parts.query!r}")
    for key, values in query.items():
        if key != "timeout_s":
            problems.append(f"option {key!r}: unknown, want timeout_s")
        elif len(values) != 1:
            problems.append("option timeout_s: given more than once")
        else:
            timeout_s = _positive_float(values[0], "timeout_s", problems)
    if problems:
        raise LedgerConfigError(f"sqlite ledger URL {url!r}: " + "; ".join(problems))
    return SqliteLedgerConfig(Path(path), timeout_s)


def _positive_float(text: str, name: str, problems: list[str]) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        problems.append(f"option {name}: got {text!r}, want a number of seconds > 0")
        return 1.0
    return value


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One row as stored (nothing here is trusted until ``hash_ok`` says so)."""

    height: int
    prev_hash: bytes
    time_ms: int
    payload: bytes
    entry_hash: bytes

    def computed_hash(self) -> bytes:
        return sqlite_entry_hash(self.prev_hash, self.height, self.time_ms, self.payload)

    def receipt(self, ledger_id: str) -> LedgerReceipt:
        return LedgerReceipt(
            backend=BACKEND,
            ledger_id=ledger_id,
            chain_id=None,
            tx_hash=self.entry_hash.hex(),
            block_number=self.height,
            block_time_ms=self.time_ms,
            prev_hash=self.prev_hash.hex(),
            payload=self.payload,
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SqliteLedger:
    """The embedded hash-chained ledger (see the module docstring for the exact bytes).

    Thread-safe: one connection guarded by a lock. Several processes may share the file.
    """

    def __init__(self, config: SqliteLedgerConfig, *, clock: Callable[[], int] = _now_ms) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._ledger_id: str | None = None
        # The highest entry whose chain from genesis this open ledger has recomputed.
        self._walked: LedgerEntry | None = None

    @classmethod
    def from_url(cls, url: str) -> SqliteLedger:
        return cls(parse_sqlite_url(url))

    @property
    def path(self) -> Path:
        return self._config.path

    @property
    def ledger_id(self) -> str:
        """The genesis entry hash (64 hex); known once the ledger is open."""
        if self._ledger_id is None:
            raise LedgerError("sqlite ledger is not open")
        return self._ledger_id

    def open(self) -> None:
        """Open the file (creating it with its genesis entry if it does not exist yet)."""
        with self._lock:
            if self._db is not None:
                return
            db = self._connect()
            try:
                genesis = self._initialise(db)
            except BaseException:
                db.close()
                raise
            self._db = db
            self._ledger_id = genesis.entry_hash.hex()

    def _connect(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise LedgerError(f"sqlite ledger: directory {self.path.parent} does not exist")
        try:
            db = sqlite3.connect(
                self.path,
                timeout=self._config.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"sqlite ledger {self.path}: cannot open: {exc}") from None
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA trusted_schema = OFF")
        except sqlite3.Error as exc:
            db.close()
            raise LedgerError(f"sqlite ledger {self.path}: cannot configure: {exc}") from None
        if mode is None or str(mode[0]).lower() != "wal":
            db.close()
            raise LedgerError(f"sqlite ledger {self.path}: journal mode: got {mode}, want wal")
        return db

    def _initialise(self, db: sqlite3.Connection) -> LedgerEntry:
        """Create schema and genesis in an empty file, or check a file we made; returns the
        genesis entry after checking its hash and fixed fields."""
        try:
            with _immediate(db):
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if app_id == 0 and tables == 0:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    genesis = _make_entry(0, ZERO_HASH, self._clock(), GENESIS_PAYLOAD)
                    _insert(db, genesis)
                    return genesis
                self._check_marks(db, app_id)
                stored = _read_entry(db, 0)
            if stored is None:
                raise ProofError("no genesis entry", expected=0, computed=None)
            _check_genesis(stored)
        except sqlite3.Error as exc:
            raise LedgerError(f"sqlite ledger {self.path}: cannot initialise: {exc}") from None
        except ProofError as exc:
            raise LedgerError(f"sqlite ledger {self.path}: {exc}; refusing to open") from exc
        return stored

    def _check_marks(self, db: sqlite3.Connection, app_id: int) -> None:
        if app_id != APPLICATION_ID:
            raise LedgerError(
                f"sqlite ledger {self.path}: not a pledgewatch ledger "
                f"(application_id: got {app_id:#x}, want {APPLICATION_ID:#x})"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"sqlite ledger {self.path}: schema version: got {version}, want {SCHEMA_VERSION}"
            )

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise LedgerError("sqlite ledger is not open; call open() or use open_ledger()")
        return self._db

    def anchor(self, payload: bytes) -> LedgerReceipt:
        """Append ``payload`` as the next entry (one durable transaction) and return its
        receipt. Refuses to extend a tip whose stored hash does not match its fields."""
        if not isinstance(payload, bytes) or not 0 < len(payload) <= MAX_PAYLOAD_BYTES:
            raise LedgerError(f"payload: want 1..{MAX_PAYLOAD_BYTES} bytes")
        with self._lock:
            db = self._connection()
            try:
                with _immediate(db):
                    tip = _read_tip(db)
                    if tip is None or tip.computed_hash() != tip.entry_hash:
                        height = "none" if tip is None else tip.height
                        raise LedgerError(
                            f"sqlite ledger {self.path}: tip entry {height} does not match "
                            "its hash; the file was altered, refusing to append"
                        )
                    time_ms = max(self._clock(), tip.time_ms)
                    entry = _make_entry(tip.height + 1, tip.entry_hash, time_ms, payload)
                    _insert(db, entry)
            except sqlite3.Error as exc:
                raise LedgerError(f"sqlite ledger {self.path}: append failed: {exc}") from None
            except ProofError as exc:
                raise LedgerError(f"sqlite ledger {self.path}: tip entry: {exc}") from exc
            return entry.receipt(self.ledger_id)

    def check(self, receipt: LedgerReceipt) -> None:
        """Confirm ``receipt`` from the raw rows: the entry at its height hashes to its stored
        hash, links to a correctly hashed previous entry, sits on an intact chain from the
        genesis entry (the ledger id), and equals the receipt field by field.

        The chain from genesis is recomputed once per open ledger, up to the highest height
        checked so far; later checks at or below that height re-verify their own entry, its
        link and the unchanged hash of that highest entry, and checks above it walk on from
        there. So auditing n receipts costs O(n) hashing, not O(n²). A fresh ``open()``
        walks from genesis again. ``ProofError.expected`` is what the receipt (or a stored
        row) claims, ``computed`` what the recomputation found.
        """
        _check_receipt_shape(receipt)
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN")  # one read snapshot for the whole check
                try:
                    entry = self._verified_entry(db, receipt.block_number)
                finally:
                    db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise LedgerError(f"sqlite ledger {self.path}: read failed: {exc}") from None
        if receipt.ledger_id != self.ledger_id:
            raise ProofError(
                "sqlite ledger id (genesis hash) differs from the receipt's",
                expected=receipt.ledger_id,
                computed=self.ledger_id,
            )
        _compare(entry, receipt)

    def _verified_entry(self, db: sqlite3.Connection, target: int) -> LedgerEntry:
        walked = self._walked
        if walked is not None:
            boundary = _read_entry(db, walked.height)
            if boundary != walked or walked.computed_hash() != walked.entry_hash:
                raise ProofError(
                    f"sqlite ledger: entry {walked.height} changed since it was verified",
                    expected=walked.entry_hash,
                    computed=None if boundary is None else boundary.entry_hash,
                )
            if target <= walked.height:
                return _entry_and_link(db, target)
        entry = self._walk(db, walked, target)
        self._walked = entry
        return entry

    def _walk(self, db: sqlite3.Connection, start: LedgerEntry | None, target: int) -> LedgerEntry:
        """Recompute the chain from ``start`` (already verified; None = from genesis) up to
        ``target``; returns the entry at ``target``."""
        first = 0 if start is None else start.height + 1
        prev = ZERO_HASH if start is None else start.entry_hash
        entry = start
        for height, entry in enumerate(_iter_entries(db, first, target), start=first):
            if entry.height != height:
                raise ProofError(
                    f"sqlite ledger: entry heights: missing height {height}",
                    expected=height,
                    computed=entry.height,
                )
            _check_link(entry, prev)
            if height == 0:
                _check_genesis(entry)
                if entry.entry_hash.hex() != self.ledger_id:
                    raise ProofError(
                        "sqlite ledger: genesis entry changed since the ledger was opened",
                        expected=self.ledger_id,
                        computed=entry.entry_hash.hex(),
                    )
            prev = entry.entry_hash
        if entry is None or entry.height != target:
            raise ProofError(
                f"sqlite ledger has no entry at height {target}",
                expected=target,
                computed=None if entry is None else entry.height,
            )
        return entry

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._walked = None

    def __enter__(self) -> SqliteLedger:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _immediate:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            self._db.execute("ROLLBACK")
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise


def _make_entry(height: int, prev_hash: bytes, time_ms: int, payload: bytes) -> LedgerEntry:
    if not 0 <= time_ms <= _MAX_INT64:
        raise LedgerError(f"entry time: got {time_ms} ms, want 0..2^63-1")
    entry_hash = sqlite_entry_hash(prev_hash, height, time_ms, payload)
    return LedgerEntry(height, prev_hash, time_ms, payload, entry_hash)


def _insert(db: sqlite3.Connection, entry: LedgerEntry) -> None:
    db.execute(
        f"INSERT INTO ledger_entries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
        (entry.height, entry.prev_hash, entry.time_ms, entry.payload, entry.entry_hash),
    )


def _row_entry(row: tuple[object, ...]) -> LedgerEntry:
    height, prev_hash, time_ms, payload, entry_hash = row
    if not (
        isinstance(height, int)
        and isinstance(prev_hash, bytes)
        and isinstance(time_ms, int)
        and isinstance(payload, bytes)
        and isinstance(entry_hash, bytes)
    ):
        raise ProofError(f"sqlite ledger: entry {height!r} has columns of the wrong type")
    return LedgerEntry(height, prev_hash, time_ms, payload, entry_hash)


def _read_entry(db: sqlite3.Connection, height: int) -> LedgerEntry | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM ledger_entries WHERE height = ?",  # noqa: S608
        (height,),
    ).fetchone()
    return None if row is None else _row_entry(row)


def _read_tip(db: sqlite3.Connection) -> LedgerEntry | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM ledger_entries ORDER BY height DESC LIMIT 1"  # noqa: S608
    ).fetchone()
    return None if row is None else _row_entry(row)


def _iter_entries(db: sqlite3.Connection, first: int, last: int) -> Iterator[LedgerEntry]:
    cursor = db.execute(
        f"SELECT {_COLUMNS} FROM ledger_entries WHERE height >= ? AND height <= ? "  # noqa: S608
        "ORDER BY height",
        (first, last),
    )
    for row in cursor:
        yield _row_entry(row)


def _entry_and_link(db: sqlite3.Connection, height: int) -> LedgerEntry:
    """Entry ``height`` (≥ 1) after checking its hash, the previous entry's hash and the
    link between them."""
    prev = _read_entry(db, height - 1)
    entry = _read_entry(db, height)
    if prev is None or entry is None:
        missing = height - 1 if prev is None else height
        raise ProofError(
            f"sqlite ledger: entry heights: missing height {missing}", expected=missing
        )
    if prev.height == 0:
        _check_genesis(prev)
    else:
        _check_hash(prev)
    _check_link(entry, prev.entry_hash)
    return entry


def _check_link(entry: LedgerEntry, prev: bytes) -> None:
    if entry.prev_hash != prev:
        raise ProofError(
            f"sqlite ledger: entry {entry.height} does not link to entry {entry.height - 1}",
            expected=prev,
            computed=entry.prev_hash,
        )
    _check_hash(entry)


def _check_hash(entry: LedgerEntry) -> None:
    computed = entry.computed_hash()
    if computed != entry.entry_hash:
        raise ProofError(
            f"sqlite ledger: entry {entry.height} does not hash to its stored entry hash",
            expected=entry.entry_hash,
            computed=computed,
        )


def _check_genesis(entry: LedgerEntry) -> None:
    if entry.prev_hash != ZERO_HASH or entry.payload != GENESIS_PAYLOAD:
        raise ProofError(
            "sqlite ledger: genesis entry: want 32 zero bytes as prev_hash and the fixed payload",
            expected=GENESIS_PAYLOAD,
            computed=entry.payload,
        )
    computed = entry.computed_hash()
    if computed != entry.entry_hash:
        raise ProofError(
            "sqlite ledger: genesis entry does not hash to its stored entry hash",
            expected=entry.entry_hash,
            computed=computed,
        )


def _check_receipt_shape(receipt: LedgerReceipt) -> None:
    if receipt.backend != BACKEND:
        raise ProofError(
            "receipt is not for the sqlite ledger", expected=BACKEND, computed=receipt.backend
        )
    if receipt.chain_id is not None:
        raise ProofError(
            "sqlite receipt: want chain_id None", expected=None, computed=receipt.chain_id
        )
    if not 1 <= receipt.block_number <= _MAX_INT64:
        raise ProofError(
            f"sqlite receipt height: got {receipt.block_number}, want 1..2^63-1 "
            "(genesis anchors nothing)",
            expected=None,
            computed=receipt.block_number,
        )


def _compare(entry: LedgerEntry, receipt: LedgerReceipt) -> None:
    fields: tuple[tuple[str, object, object], ...] = (
        ("payload", receipt.payload, entry.payload),
        ("entry hash (tx_hash)", receipt.tx_hash, entry.entry_hash.hex()),
        ("prev_hash", receipt.prev_hash, entry.prev_hash.hex()),
        ("time_ms (block_time_ms)", receipt.block_time_ms, entry.time_ms),
    )
    for name, claimed, stored in fields:
        if claimed != stored:
            raise ProofError(
                f"sqlite ledger entry {entry.height}: {name} differs from the receipt",
                expected=claimed,
                computed=stored,
            )
