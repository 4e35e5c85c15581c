"""Audit: recompute the log from the raw rows and compare with every signed statement.

It trusts no derived table. From the stored wire bytes of every event and every key record it
recomputes event ids, signatures and leaf hashes, rebuilds the Merkle tree, and checks it
against the ``leaves`` table, every checkpoint's signed root and every ledger receipt. A row
edited, deleted or inserted directly in the database shows up as a finding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from anchor.ledger import Ledger
from anchor.store.db import Database
from pledgewatch.anchoring import LedgerReceipt, anchor_payload
from pledgewatch.canonical import decode
from pledgewatch.checkpoint import verify_checkpoint
from pledgewatch.errors import PledgewatchError
from pledgewatch.events import SignedEvent
from pledgewatch.logentry import event_leaf_from_wire, parse_leaf
from pledgewatch.merkle import MerkleTree, leaf_hash
from pledgewatch.signing import verify_event


class Finding(enum.Enum):
    EVENT_ID_MISMATCH = "event_id_mismatch"  # a stored event's bytes were edited
    BAD_SIGNATURE = "bad_signature"  # a stored event does not verify with its enrolled key
    UNKNOWN_KEY = "unknown_key"
    ENTRY_MISSING = "entry_missing"  # a log position has no row: a row was deleted
    ENTRY_BEYOND_LOG = "entry_beyond_log"  # a row claims a position past the log size
    LEAF_MISMATCH = "leaf_mismatch"  # the leaves table disagrees with the rows
    CHECKPOINT_SIGNATURE = "checkpoint_signature"
    CHECKPOINT_ROOT = "checkpoint_root"  # the recomputed log does not give the signed root
    LEDGER_PAYLOAD = "ledger_payload"
    LEDGER_CHECK = "ledger_check"  # the ledger itself disagrees with the receipt


@dataclass(frozen=True, slots=True)
class AuditFinding:
    finding: Finding
    where: str
    detail: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    log_size: int
    events: int
    key_records: int
    checkpoints: int
    anchored: int
    findings: tuple[AuditFinding, ...]

    @property
    def clean(self) -> bool:
        return not self.findings


def audit(db: Database, origin: str, anchor_key: bytes, ledger: Ledger | None) -> AuditReport:
    tx = db.read()
    size = tx.one("SELECT size FROM log_state WHERE id = 1")[0]
    findings: list[AuditFinding] = []
    hashes: dict[int, bytes] = {}
    keys = {r[0]: bytes(r[1]) for r in tx.all("SELECT key_id, public_key FROM keys")}
    events = tx.all("SELECT event_id, wire, leaf_index FROM events")
    for event_id, wire, index in events:
        leaf = _event_row(str(event_id), _raw(wire), keys, findings)
        if index is not None and leaf is not None:
            _place(hashes, index, leaf, size, f"event {event_id}", findings)
    records = tx.all("SELECT id, leaf, leaf_index FROM key_records")
    for row_id, leaf, index in records:
        try:
            parse_leaf(_raw(leaf))
        except PledgewatchError as exc:
            findings.append(AuditFinding(Finding.LEAF_MISMATCH, f"key record {row_id}", str(exc)))
        if index is not None:
            _place(hashes, index, _raw(leaf), size, f"key record {row_id}", findings)
    tree = _rebuild(hashes, size, findings)
    stored = dict(tx.all("SELECT leaf_index, leaf_hash FROM leaves"))
    for index in range(size):
        if index in hashes and index in stored and _raw(stored[index]) != hashes[index]:
            findings.append(
                AuditFinding(
                    Finding.LEAF_MISMATCH,
                    f"entry {index}",
                    "leaves table differs from the row's recomputed hash",
                )
            )
    checkpoints = tx.all("SELECT size, note, ledger_receipt FROM checkpoints ORDER BY size")
    anchored = _checkpoints(checkpoints, tree, origin, anchor_key, ledger, findings)
    return AuditReport(size, len(events), len(records), len(checkpoints), anchored, tuple(findings))


def _raw(value: object) -> bytes:
    """Column bytes as stored; a hand edit may have turned a BLOB into TEXT or a number."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def _event_row(
    event_id: str, wire: bytes, keys: dict[str, bytes], findings: list[AuditFinding]
) -> bytes | None:
    try:
        signed = SignedEvent.from_wire(wire)
    except PledgewatchError as exc:
        findings.append(
            AuditFinding(
                Finding.EVENT_ID_MISMATCH,
                f"event {event_id}",
                f"stored bytes no longer decode: {exc}",
            )
        )
        return event_leaf_from_wire(wire)
    if signed.event_id != event_id:
        findings.append(
            AuditFinding(
                Finding.EVENT_ID_MISMATCH,
                f"event {event_id}",
                f"stored bytes hash to {signed.event_id}",
            )
        )
    key = keys.get(signed.key_id)
    if key is None:
        findings.append(
            AuditFinding(
                Finding.UNKNOWN_KEY,
                f"event {event_id}",
                f"signed by {signed.key_id}, not in the registry",
            )
        )
    else:
        try:
            verify_event(signed, key)
        except PledgewatchError as exc:
            findings.append(AuditFinding(Finding.BAD_SIGNATURE, f"event {event_id}", str(exc)))
    return event_leaf_from_wire(wire)


def _place(
    hashes: dict[int, bytes],
    index: object,
    leaf: bytes,
    size: int,
    where: str,
    findings: list[AuditFinding],
) -> None:
    if not isinstance(index, int):
        findings.append(
            AuditFinding(Finding.ENTRY_BEYOND_LOG, where, f"leaf_index {index!r} is not an integer")
        )
        return
    if index >= size:
        findings.append(
            AuditFinding(
                Finding.ENTRY_BEYOND_LOG, where, f"claims entry {index}, log size is {size}"
            )
        )
        return
    hashes[index] = leaf_hash(leaf)


def _rebuild(hashes: dict[int, bytes], size: int, findings: list[AuditFinding]) -> MerkleTree:
    tree = MerkleTree()
    for index in range(size):
        h = hashes.get(index)
        if h is None:
            findings.append(
                AuditFinding(
                    Finding.ENTRY_MISSING,
                    f"entry {index}",
                    "no event or key record holds this log position",
                )
            )
            h = b"\x00" * 32
        tree.extend_leaf_hashes([h])
    return tree


def _checkpoints(
    rows: list[tuple[object, ...]],
    tree: MerkleTree,
    origin: str,
    anchor_key: bytes,
    ledger: Ledger | None,
    findings: list[AuditFinding],
) -> int:
    anchored = 0
    for size, note, receipt_json in rows:
        assert isinstance(size, int) and isinstance(note, str)
        where = f"checkpoint {size}"
        try:
            cp = verify_checkpoint(note.encode(), origin, anchor_key, origin=origin)
        except PledgewatchError as exc:
            findings.append(AuditFinding(Finding.CHECKPOINT_SIGNATURE, where, str(exc)))
            continue
        if size > tree.size or cp.root != tree.root(size):
            findings.append(
                AuditFinding(
                    Finding.CHECKPOINT_ROOT,
                    where,
                    "signed root differs from the log recomputed from rows",
                )
            )
        if receipt_json is None:
            continue
        anchored += 1
        assert isinstance(receipt_json, str)
        receipt = LedgerReceipt.from_dict(decode(receipt_json.encode()))
        if receipt.payload != anchor_payload(origin, cp.size, cp.root):
            findings.append(
                AuditFinding(
                    Finding.LEDGER_PAYLOAD,
                    where,
                    "ledger payload does not commit to this checkpoint",
                )
            )
        if ledger is not None:
            try:
                ledger.check(receipt)
            except PledgewatchError as exc:
                findings.append(AuditFinding(Finding.LEDGER_CHECK, where, str(exc)))
    return anchored
