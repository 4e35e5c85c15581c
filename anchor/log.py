"""The sequencer: gives stored events and key records their log positions, cuts checkpoints.

One sequencer at a time (``Database.transaction(sequencer=True)``: SQLite's write lock, or a
PostgreSQL advisory lock) reads the log size and compact range, appends pending entries —
key records first, then events in arrival order — as RFC 6962 leaves, and saves the new size
and compact range in the same transaction. The log is therefore one append-only sequence
however many workers ingest.

A checkpoint is cut when the log grew and either ``checkpoint_interval_ms`` passed since the
last one or ``checkpoint_max_entries`` entries were appended since. It is a C2SP
tlog-checkpoint signed by the anchor key, whose note key name is the log origin.
"""

from __future__ import annotations

from dataclasses import dataclass

from anchor.config import LogSection
from anchor.store.db import Database, Tx
from pledgewatch.checkpoint import Checkpoint, sign_checkpoint
from pledgewatch.logentry import event_leaf_from_wire
from pledgewatch.merkle import CompactRange, leaf_hash
from pledgewatch.signing import SigningKey

BATCH = 5000


@dataclass(frozen=True, slots=True)
class CutCheckpoint:
    size: int
    root: bytes
    note: bytes


class Sequencer:
    def __init__(self, db: Database, origin: str, key: SigningKey, config: LogSection) -> None:
        self.db = db
        self.origin = origin
        self.key = key
        self.config = config

    def step(self, now_ms: int) -> int:
        """Append up to ``BATCH`` pending entries; returns how many were appended."""
        with self.db.transaction(sequencer=True) as tx:
            size, blob = tx.one("SELECT size, compact FROM log_state WHERE id = 1")
            compact = CompactRange.from_bytes(bytes(blob))
            keys = tx.all("SELECT id, leaf FROM key_records WHERE leaf_index IS NULL ORDER BY id")
            events = tx.all(
                "SELECT event_id, wire FROM events WHERE leaf_index IS NULL "
                "ORDER BY received_ms, event_id LIMIT ?",
                (BATCH,),
            )
            if not keys and not events:
                return 0
            leaves: list[tuple[int, bytes]] = []
            index = size
            for row_id, leaf in keys:
                leaves.append((index, leaf_hash(bytes(leaf))))
                tx.execute("UPDATE key_records SET leaf_index = ? WHERE id = ?", (index, row_id))
                index += 1
            updates = []
            for event_id, wire in events:
                leaves.append((index, leaf_hash(event_leaf_from_wire(bytes(wire)))))
                updates.append((index, event_id))
                index += 1
            tx.executemany("UPDATE events SET leaf_index = ? WHERE event_id = ?", updates)
            for _, h in leaves:
                compact.append(h)
            tx.executemany("INSERT INTO leaves (leaf_index, leaf_hash) VALUES (?, ?)", leaves)
            tx.execute(
                "UPDATE log_state SET size = ?, compact = ? WHERE id = 1",
                (index, compact.to_bytes()),
            )
            self._maybe_checkpoint(tx, compact, now_ms)
            return int(index - size)

    def checkpoint_if_due(self, now_ms: int) -> CutCheckpoint | None:
        with self.db.transaction(sequencer=True) as tx:
            _, blob = tx.one("SELECT size, compact FROM log_state WHERE id = 1")
            return self._maybe_checkpoint(tx, CompactRange.from_bytes(bytes(blob)), now_ms)

    def _maybe_checkpoint(self, tx: Tx, compact: CompactRange, now_ms: int) -> CutCheckpoint | None:
        last = tx.one("SELECT size, created_ms FROM checkpoints ORDER BY size DESC LIMIT 1")
        last_size, last_ms = last if last else (0, 0)
        if compact.size == last_size:
            return None
        due = (
            now_ms - last_ms >= self.config.checkpoint_interval_ms
            or compact.size - last_size >= self.config.checkpoint_max_entries
        )
        if not due:
            return None
        root = compact.root()
        note = sign_checkpoint(
            Checkpoint(self.origin, compact.size, root), self.origin, self.key
        ).to_bytes()
        tx.execute(
            "INSERT INTO checkpoints (size, root, note, created_ms) VALUES (?, ?, ?, ?)",
            (compact.size, root, note.decode(), now_ms),
        )
        return CutCheckpoint(compact.size, root, note)
