"""The durable, bounded outbox: signed events wait here until the anchor's receipt arrives.

Peek/ack semantics: ``peek`` returns the oldest entries again and again until ``ack`` removes
them; only a verified receipt from the anchor calls ``ack``. The cap is a number of events:
when the outbox holds ``capacity`` events, new readings are refused with ``OutboxFull`` (push
back) — nothing already stored is ever dropped, and the outbox never grows past the cap.
Entries leave in no other way: there is no expiry; an entry older than the age limit raises
an alarm instead (see ``gateway.health``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.store import GatewayStore


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    pos: int
    event_id: str
    device: str
    seq: int
    created_ms: int
    wire: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int
    capacity: int
    oldest_created_ms: int | None


class Outbox:
    def __init__(self, store: GatewayStore, capacity: int) -> None:
        self._store = store
        self.capacity = capacity
        self._depth: int | None = None

    @property
    def depth(self) -> int:
        if self._depth is None:
            (self._depth,) = self._store.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return self._depth

    def room(self) -> int:
        return max(0, self.capacity - self.depth)

    def put(
        self, conn: sqlite3.Connection, entries: list[tuple[str, str, int, int, bytes]]
    ) -> None:
        """Insert ``(event_id, device, seq, created_ms, wire)`` rows inside the caller's
        transaction; call ``committed(len(entries))`` once that transaction has committed."""
        conn.executemany(
            "INSERT INTO outbox (event_id, device, seq, created_ms, wire) VALUES (?, ?, ?, ?, ?)",
            entries,
        )

    def committed(self, added: int) -> None:
        self._depth = self.depth + added

    def peek(self, after_pos: int, limit: int) -> list[OutboxEntry]:
        rows = self._store.conn.execute(
            "SELECT pos, event_id, device, seq, created_ms, wire FROM outbox "
            "WHERE pos > ? ORDER BY pos LIMIT ?",
            (after_pos, limit),
        ).fetchall()
        return [OutboxEntry(*row) for row in rows]

    def ack(self, event_ids: Iterable[str], now_ms: int) -> int:
        """Remove the receipted events; returns how many were still in the outbox."""
        ids = [(event_id,) for event_id in event_ids]
        with self._store.transaction() as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM outbox WHERE event_id = ?", ids)
            removed = conn.total_changes - before
            self._store.bump(conn, "receipted", removed)
            self._store.bump(conn, "receipt_unknown", len(ids) - removed)
            self._store.set_meta(conn, "last_receipt_ms", str(now_ms))
        self._depth = self.depth - removed
        return removed

    def stats(self) -> OutboxStats:
        row = self._store.conn.execute("SELECT MIN(created_ms) FROM outbox").fetchone()
        return OutboxStats(self.depth, self.capacity, row[0])
