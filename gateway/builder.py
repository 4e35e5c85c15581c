"""Readings become signed, sequenced, durably stored events.

For each device the builder keeps ``(seq, head)``: the last sequence number used and that
event's id. A reading becomes the event ``seq + 1`` with ``prev = head``, is signed with the
gateway key, and is stored in the outbox in the same SQLite transaction that advances the
head — so a restart, even after ``kill -9``, never skips, reuses or forks a sequence number.
One transaction covers a whole batch (group commit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from devices.base import Reading
from gateway.errors import OutboxFull
from gateway.outbox import Outbox
from gateway.store import GatewayStore
from pledgewatch.errors import ValidationError
from pledgewatch.events import ZERO_HASH, SignedEvent
from pledgewatch.signing import EVENT_DOMAIN, SigningKey


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    head: str


@dataclass(frozen=True, slots=True)
class Invalid:
    reading: Reading
    reason: str


@dataclass(frozen=True, slots=True)
class BuildResult:
    accepted: tuple[SignedEvent, ...]
    invalid: tuple[Invalid, ...]
    deferred: tuple[Reading, ...]


class EventBuilder:
    def __init__(
        self, store: GatewayStore, outbox: Outbox, key: SigningKey, warehouse: str, gateway: str
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._key = key
        self.warehouse = warehouse
        self.gateway = gateway
        self._heads: dict[str, ChainHead] | None = None

    def heads(self) -> dict[str, ChainHead]:
        if self._heads is None:
            rows = self._store.conn.execute("SELECT device, seq, head FROM chain").fetchall()
            self._heads = {device: ChainHead(seq, head) for device, seq, head in rows}
        return self._heads

    def append(self, readings: Sequence[Reading], now_ms: int) -> BuildResult:
        """Sign and store as many readings as the outbox has room for, in one transaction.

        Invalid readings are returned (and counted), never signed. Readings beyond the room
        left are returned as ``deferred`` for the caller to offer again; if there is no room at
        all, ``OutboxFull`` is raised and nothing changes.
        """
        room = self._outbox.room()
        if room == 0 and readings:
            raise OutboxFull(self._outbox.depth, self._outbox.capacity)
        heads = dict(self.heads())
        accepted: list[SignedEvent] = []
        invalid: list[Invalid] = []
        rows: list[tuple[str, str, int, int, bytes]] = []
        taken = 0
        while taken < len(readings) and len(accepted) < room:
            reading = readings[taken]
            taken += 1
            current = heads.get(reading.device, ChainHead(0, ZERO_HASH))
            try:
                event = reading.to_event(
                    self.warehouse, self.gateway, current.seq + 1, current.head
                )
            except ValidationError as exc:
                invalid.append(Invalid(reading, str(exc)))
                continue
            body = event.canonical()  # encoded once: signed, hashed and shipped as is
            signature = self._key.sign(EVENT_DOMAIN, body)
            event_id = hashlib.sha256(body).hexdigest()
            wire = SignedEvent.wire_from_body(body, self._key.key_id, signature)
            heads[reading.device] = ChainHead(event.seq, event_id)
            accepted.append(SignedEvent(event, self._key.key_id, signature, body))
            rows.append((event_id, event.device, event.seq, now_ms, wire))
        if rows or invalid:
            self._commit(heads, rows, invalid)
        return BuildResult(tuple(accepted), tuple(invalid), tuple(readings[taken:]))

    def _commit(
        self,
        heads: dict[str, ChainHead],
        rows: list[tuple[str, str, int, int, bytes]],
        invalid: list[Invalid],
    ) -> None:
        touched = {row[1] for row in rows}
        with self._store.transaction() as conn:
            self._outbox.put(conn, rows)
            conn.executemany(
                "INSERT INTO chain VALUES (?, ?, ?) ON CONFLICT(device) "
                "DO UPDATE SET seq = excluded.seq, head = excluded.head",
                [(d, heads[d].seq, heads[d].head) for d in touched],
            )
            self._store.bump(conn, "events_built", len(rows))
            for item in invalid:
                self._store.bump(conn, f"invalid_reading:{item.reading.device}")
        self._heads = heads
        self._outbox.committed(len(rows))
