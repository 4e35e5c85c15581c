"""Proof files for stored events, built from the store (see pledgewatch.prooffile).

The checkpoint chosen is the strongest one that covers both the event and its key record:
anchored on the ledger and witnessed if there is such a one, else witnessed, else the newest.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from anchor.errors import AnchorError
from anchor.publish import LeafMirror
from anchor.store.db import Database
from pledgewatch.anchoring import LedgerReceipt
from pledgewatch.canonical import decode
from pledgewatch.events import SignedEvent
from pledgewatch.logentry import KeyAction, KeyRecord, parse_leaf
from pledgewatch.prooffile import build_proof_file

CHECKPOINT_COLUMNS = "size, note, cosigned_note, ledger_receipt"
BATCH_ROWS = 500  # events read per query by build_event_proofs


class ProofUnavailable(AnchorError):
    """The event is unknown, or not yet covered by a checkpoint."""


def build_event_proof(db: Database, event_id: str, mirror: LeafMirror | None = None) -> bytes:
    tx = db.read()
    row = tx.one("SELECT wire, leaf_index FROM events WHERE event_id = ?", (event_id,))
    if row is None:
        raise ProofUnavailable(f"no stored event {event_id}")
    wire, leaf_index = bytes(row[0]), row[1]
    if leaf_index is None:
        raise ProofUnavailable(f"event {event_id} is stored but not yet in the log; retry")
    signed = SignedEvent.from_wire(wire)
    key_index, key_record = _enrolment(db, signed.key_id)
    need = max(leaf_index, key_index) + 1
    chosen = tx.one(
        f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE size >= ? "  # noqa: S608
        "ORDER BY (CASE WHEN ledger_receipt IS NOT NULL AND cosigned_note IS NOT NULL THEN 3 "
        "WHEN cosigned_note IS NOT NULL THEN 2 WHEN ledger_receipt IS NOT NULL THEN 1 ELSE 0 "
        "END) DESC, size DESC LIMIT 1",
        (need,),
    )
    if chosen is None:
        raise ProofUnavailable(f"no checkpoint covers log entry {leaf_index} yet; retry")
    mirror = mirror or LeafMirror()
    mirror.sync(db)
    return _assemble(mirror, chosen, signed, leaf_index, key_index, key_record)


def build_event_proofs(
    db: Database, event_ids: Sequence[str], mirror: LeafMirror | None = None
) -> Iterator[tuple[str, bytes]]:
    """(event id, proof file) for many events: the bytes ``build_event_proof`` gives each, with
    the checkpoints read once, one enrolment look-up per key and events read in batches.

    Raises ``ProofUnavailable`` at the first event that cannot be proven yet.
    """
    checkpoints = db.read().all(f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints")  # noqa: S608
    chooser = _CheckpointChooser(checkpoints)
    mirror = mirror or LeafMirror()
    mirror.sync(db)  # after the checkpoints: the tree covers every one of them
    enrolments: dict[str, tuple[int, KeyRecord]] = {}
    for start in range(0, len(event_ids), BATCH_ROWS):
        batch = list(event_ids[start : start + BATCH_ROWS])
        marks = ", ".join("?" * len(batch))
        rows = db.read().all(
            f"SELECT event_id, wire, leaf_index FROM events WHERE event_id IN ({marks})",  # noqa: S608
            batch,
        )
        found = {str(r[0]): (bytes(r[1]), r[2]) for r in rows}
        for event_id in batch:
            if event_id not in found:
                raise ProofUnavailable(f"no stored event {event_id}")
            wire, leaf_index = found[event_id]
            if leaf_index is None:
                raise ProofUnavailable(f"event {event_id} is stored but not yet in the log; retry")
            signed = SignedEvent.from_wire(wire)
            if signed.key_id not in enrolments:
                enrolments[signed.key_id] = _enrolment(db, signed.key_id)
            key_index, key_record = enrolments[signed.key_id]
            need = max(leaf_index, key_index) + 1
            chosen = chooser.pick(need)
            if chosen is None:
                raise ProofUnavailable(f"no checkpoint covers log entry {leaf_index} yet; retry")
            yield event_id, _assemble(mirror, chosen, signed, leaf_index, key_index, key_record)


class _CheckpointChooser:
    """``build_event_proof``'s choice without a query per event: among checkpoints with
    ``size >= need``, the strongest (anchored and witnessed > witnessed > anchored > neither),
    then the largest."""

    def __init__(self, rows: list[tuple[object, ...]]) -> None:
        ordered = sorted(rows, key=lambda row: int(row[0]))  # type: ignore[call-overload]
        self.sizes = [int(row[0]) for row in ordered]  # type: ignore[call-overload]
        best: list[tuple[object, ...]] = []
        for row in reversed(ordered):
            if not best or _rank(row) > _rank(best[-1]):
                best.append(row)
            else:
                best.append(best[-1])
        self.best = best[::-1]  # best[i]: the choice among ordered[i:]

    def pick(self, need: int) -> tuple[object, ...] | None:
        i = bisect.bisect_left(self.sizes, need)
        return self.best[i] if i < len(self.best) else None


def _rank(row: tuple[object, ...]) -> tuple[int, int]:
    size, _, cosigned, ledger = row
    strength = (2 if cosigned is not None else 0) + (1 if ledger is not None else 0)
    return strength, int(size)  # type: ignore[call-overload]


def _assemble(
    mirror: LeafMirror,
    chosen: tuple[object, ...],
    signed: SignedEvent,
    leaf_index: int,
    key_index: int,
    key_record: KeyRecord,
) -> bytes:
    size, note, cosigned, ledger_json = chosen
    assert isinstance(size, int) and isinstance(note, str)
    tree = mirror.tree
    ledger = (
        None if ledger_json is None else LedgerReceipt.from_dict(decode(str(ledger_json).encode()))
    )
    return build_proof_file(
        checkpoint=str(cosigned or note).encode(),
        signed=signed,
        leaf_index=leaf_index,
        inclusion=tree.inclusion_proof(leaf_index, size),
        key_record=key_record,
        key_index=key_index,
        key_inclusion=tree.inclusion_proof(key_index, size),
        ledger=ledger,
    )


def _enrolment(db: Database, kid: str) -> tuple[int, KeyRecord]:
    rows = db.read().all(
        "SELECT leaf_index, leaf FROM key_records WHERE key_id = ? AND "
        "leaf_index IS NOT NULL ORDER BY leaf_index",
        (kid,),
    )
    for index, leaf in rows:
        record = parse_leaf(bytes(leaf))
        if isinstance(record, KeyRecord) and record.action is KeyAction.ENROL:
            return index, record
    raise ProofUnavailable(f"the enrolment of key {kid} is not yet in the log; retry")
