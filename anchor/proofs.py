"""Proof files for stored events, built from the store (see pledgewatch.prooffile).

The checkpoint chosen is the strongest one that covers both the event and its key record:
anchored on the ledger and witnessed if there is such a one, else witnessed, else the newest.
"""

from __future__ import annotations

from anchor.errors import AnchorError
from anchor.publish import LeafMirror
from anchor.store.db import Database
from pledgewatch.anchoring import LedgerReceipt
from pledgewatch.canonical import decode
from pledgewatch.events import SignedEvent
from pledgewatch.logentry import KeyAction, KeyRecord, parse_leaf
from pledgewatch.prooffile import build_proof_file


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
        "SELECT size, note, cosigned_note, ledger_receipt FROM checkpoints WHERE size >= ? "
        "ORDER BY (CASE WHEN ledger_receipt IS NOT NULL AND cosigned_note IS NOT NULL THEN 3 "
        "WHEN cosigned_note IS NOT NULL THEN 2 WHEN ledger_receipt IS NOT NULL THEN 1 ELSE 0 "
        "END) DESC, size DESC LIMIT 1",
        (need,),
    )
    if chosen is None:
        raise ProofUnavailable(f"no checkpoint covers log entry {leaf_index} yet; retry")
    size, note, cosigned, ledger_json = chosen
    mirror = mirror or LeafMirror()
    mirror.sync(db)
    tree = mirror.tree
    ledger = None if ledger_json is None else LedgerReceipt.from_dict(decode(ledger_json.encode()))
    return build_proof_file(
        checkpoint=(cosigned or note).encode(),
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
