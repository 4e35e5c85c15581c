"""Helpers for the anchor store tests: signed per-device event chains and a full log audit.

`Gateway` signs events the way a real gateway does (per-device gapless `seq`, `prev` = id of
the device's previous event) and can also be told to break the rules (a chosen `seq` or
`prev`) to provoke FORK and TAMPER findings. `check_log` recomputes everything the sequencer
stored from the raw rows: leaf data → leaf hashes → tree roots, and compares with the
`leaves` table, `log_state` and every signed checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anchor.ingest import Message
from anchor.store.db import Database
from anchor.store.schema import migrate
from pledgewatch.checkpoint import verify_checkpoint
from pledgewatch.events import ZERO_HASH, Event, Kind, SignedEvent
from pledgewatch.logentry import event_leaf_from_wire
from pledgewatch.merkle import CompactRange, MerkleTree, leaf_hash
from pledgewatch.signing import SigningKey, sign_event
from pledgewatch.topics import events_topic

BASE_MS = 1_750_000_000_000


def open_store(url: str) -> Database:
    """Open the store at `url` and bring it to the current schema."""
    db = Database(url)
    db.open()
    migrate(db)
    return db


@dataclass
class Gateway:
    """One warehouse gateway with its signing key and the chain head of each device."""

    warehouse: str
    gateway: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return events_topic(self.warehouse, self.gateway)

    def event(
        self,
        device: str,
        *,
        seq: int | None = None,
        prev: str | None = None,
        grams: int | None = None,
        key: SigningKey | None = None,
        ts_ms: int | None = None,
    ) -> SignedEvent:
        """Sign the device's next event; `seq`/`prev` override the chain (and do not advance
        it), `grams` makes it a WEIGHT event (else a HEARTBEAT), `key` signs with another key.
        """
        last_seq, last_id = self.heads.get(device, (0, ZERO_HASH))
        chained = seq is None and prev is None
        number = last_seq + 1 if seq is None else seq
        kind = Kind.HEARTBEAT if grams is None else Kind.WEIGHT
        event = Event(
            kind=kind,
            warehouse=self.warehouse,
            gateway=self.gateway,
            device=device,
            seq=number,
            prev=last_id if prev is None else prev,
            ts_ms=BASE_MS + number * 1000 if ts_ms is None else ts_ms,
            bay=None if grams is None else "bay-1",
            grams=grams,
        )
        signed = sign_event(event, key or self.key)
        if chained:
            self.heads[device] = (number, signed.event_id)
        return signed

    def chain(self, device: str, count: int) -> list[SignedEvent]:
        return [self.event(device, grams=1000 + i if i % 3 == 0 else None) for i in range(count)]

    def message(self, signed: SignedEvent, topic: str | None = None) -> Message:
        return Message(self.topic if topic is None else topic, signed.to_wire())


@dataclass(frozen=True)
class LogAudit:
    size: int
    event_leaves: int
    key_leaves: int
    checkpoints: int
    root: bytes


def check_log(db: Database, origin: str, anchor_public_key: bytes) -> LogAudit:
    """Recompute the whole log from raw rows and assert it matches what was stored.

    - every event and key record has a leaf index; together they are exactly 0..size-1;
    - `leaves` holds exactly those indexes, each with the hash of that entry's leaf data;
    - `log_state` has that size, and its compact range has the recomputed root;
    - every checkpoint verifies under the anchor key and names the recomputed root.
    """
    read = db.read()
    entries: dict[int, bytes] = {}
    event_rows = read.all("SELECT leaf_index, wire FROM events")
    key_rows = read.all("SELECT leaf_index, leaf FROM key_records")
    for index, data in [
        *((i, event_leaf_from_wire(bytes(w))) for i, w in event_rows),
        *((i, bytes(leaf)) for i, leaf in key_rows),
    ]:
        assert index is not None, "an entry was never sequenced"
        assert index not in entries, f"leaf index {index} given twice"
        entries[index] = data
    size = len(entries)
    assert sorted(entries) == list(range(size)), "leaf indexes are not gapless from 0"
    hashes = [leaf_hash(entries[i]) for i in range(size)]
    stored = read.all("SELECT leaf_index, leaf_hash FROM leaves ORDER BY leaf_index")
    assert [i for i, _ in stored] == list(range(size))
    assert [bytes(h) for _, h in stored] == hashes, "a stored leaf hash is not its entry's"
    tree = MerkleTree.from_leaf_hashes(hashes)
    state = read.one("SELECT size, compact FROM log_state WHERE id = 1")
    assert state[0] == size
    compact = CompactRange.from_bytes(bytes(state[1]))
    assert (compact.size, compact.root()) == (size, tree.root())
    checkpoints = read.all("SELECT size, root, note FROM checkpoints ORDER BY size")
    for cp_size, root, note in checkpoints:
        checkpoint = verify_checkpoint(note.encode(), origin, anchor_public_key, origin=origin)
        assert (checkpoint.size, checkpoint.root) == (cp_size, bytes(root))
        assert bytes(root) == tree.root(cp_size), f"checkpoint {cp_size} root is wrong"
    return LogAudit(size, len(event_rows), len(key_rows), len(checkpoints), tree.root())
