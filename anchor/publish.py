"""Witnessing and ledger anchoring of checkpoints, in their own thread and connection.

Every ``POLL_S``:

- **witness**: the newest checkpoint without a cosignature is sent to the bank's witness
  (C2SP tlog-witness ``add-checkpoint``) with a consistency proof from the last size the
  witness cosigned. On success the cosignature line is added to the note and stored as
  ``cosigned_note``: that checkpoint is *witnessed*. A 409 answer names the size the witness
  holds; if it is one of our checkpoints we prove from there, otherwise the log and the
  witness disagree and it is recorded as an error (never papered over).
- **ledger**: the newest checkpoint is anchored when none is yet, or when ``ledger.every``
  checkpoints were cut since the last anchored one. Its receipt is stored: *anchored*.

Failures are stored on the checkpoint row (``witness_error``, ``ledger_error``) and retried.
"""

from __future__ import annotations

import logging
import threading
import time

from anchor.config import AnchorConfig
from anchor.ledger import Ledger, open_ledger
from anchor.ledger.errors import LedgerError
from anchor.store.db import Database
from anchor.witness import CosignStatus, request_cosignature
from pledgewatch import canonical
from pledgewatch.anchoring import anchor_payload
from pledgewatch.checkpoint import SignedNote, verify_cosignature, with_signatures
from pledgewatch.errors import PledgewatchError
from pledgewatch.merkle import MerkleTree
from pledgewatch.signing import SigningKey

log = logging.getLogger(__name__)

POLL_S = 0.2


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LeafMirror:
    """An in-memory Merkle tree that follows the ``leaves`` table (append-only)."""

    def __init__(self) -> None:
        self.tree = MerkleTree()

    def sync(self, db: Database) -> None:
        rows = db.read().all(
            "SELECT leaf_index, leaf_hash FROM leaves WHERE leaf_index >= ? ORDER BY leaf_index",
            (self.tree.size,),
        )
        if rows and (rows[0][0] != self.tree.size or rows[-1][0] != self.tree.size + len(rows) - 1):
            raise PledgewatchError(f"leaves table has a hole after {self.tree.size}")
        self.tree.extend_leaf_hashes(bytes(leaf_hash) for _, leaf_hash in rows)


class Publisher:
    def __init__(self, config: AnchorConfig, key: SigningKey) -> None:
        self.config = config
        self.key = key
        self.mirror = LeafMirror()

    def run(self, stop: threading.Event) -> None:
        db = Database(self.config.anchor.store)
        db.open()
        ledger = open_ledger(self.config.ledger.url)
        try:
            while not stop.wait(POLL_S):
                self.step(db, ledger)
        finally:
            ledger.close()
            db.close()

    def step(self, db: Database, ledger: Ledger) -> None:
        try:
            if self.config.witness is not None:
                self._witness(db)
            self._anchor(db, ledger)
        except (PledgewatchError, LedgerError, OSError) as exc:
            log.error("publishing checkpoints failed, will retry: %s", exc)

    def _witness(self, db: Database) -> None:
        witness = self.config.witness
        assert witness is not None
        tx = db.read()
        newest = tx.one(
            "SELECT size, note FROM checkpoints WHERE cosigned_note IS NULL "
            "AND size > COALESCE((SELECT MAX(size) FROM checkpoints WHERE "
            "cosigned_note IS NOT NULL), 0) ORDER BY size DESC LIMIT 1"
        )
        if newest is None:
            return
        size, note = newest
        old = tx.one("SELECT MAX(size) FROM checkpoints WHERE cosigned_note IS NOT NULL")[0] or 0
        self.mirror.sync(db)
        for _ in range(2):
            proof = self.mirror.tree.consistency_proof(old, size) if old else []
            result = request_cosignature(witness.url, old, proof, note.encode(), witness.timeout_s)
            if result.status is CosignStatus.OK:
                cosigned = with_signatures(SignedNote.parse(note.encode()), result.signatures)
                verify_cosignature(cosigned, witness.name, witness.public_key)
                with db.transaction() as wtx:
                    wtx.execute(
                        "UPDATE checkpoints SET cosigned_note = ?, witnessed_ms = ?, "
                        "witness_error = NULL WHERE size = ?",
                        (cosigned.to_bytes().decode(), now_ms(), size),
                    )
                return
            held = result.current_size
            if (
                result.status is CosignStatus.CONFLICT
                and held is not None
                and held != old
                and db.read().one("SELECT size FROM checkpoints WHERE size = ?", (held,))
            ):
                old = held
                continue
            break
        with db.transaction() as wtx:
            wtx.execute(
                "UPDATE checkpoints SET witness_error = ? WHERE size = ?",
                (result.message[:500], size),
            )
        log.error("witness refused checkpoint %d: %s", size, result.message)

    def _anchor(self, db: Database, ledger: Ledger) -> None:
        tx = db.read()
        last = tx.one("SELECT MAX(size) FROM checkpoints WHERE ledger_receipt IS NOT NULL")[0]
        # With a witness, anchor witnessed checkpoints only: one checkpoint then carries both
        # the bank's cosignature and the ledger receipt, the strongest proof.
        witnessed = "AND cosigned_note IS NOT NULL" if self.config.witness is not None else ""
        pending = tx.all(
            f"SELECT size, root FROM checkpoints WHERE size > ? {witnessed} "  # noqa: S608
            "ORDER BY size DESC",
            (last or 0,),
        )
        if not pending or (last is not None and len(pending) < self.config.ledger.every):
            return
        size, root = pending[0]
        try:
            receipt = ledger.anchor(anchor_payload(self.config.anchor.origin, size, bytes(root)))
        except LedgerError as exc:
            with db.transaction() as wtx:
                wtx.execute(
                    "UPDATE checkpoints SET ledger_error = ? WHERE size = ?", (str(exc)[:500], size)
                )
            raise
        with db.transaction() as wtx:
            wtx.execute(
                "UPDATE checkpoints SET ledger_receipt = ?, anchored_ms = ?, "
                "ledger_error = NULL WHERE size = ?",
                (_receipt_json(receipt.to_dict()), now_ms(), size),
            )


def _receipt_json(value: dict[str, object]) -> str:
    return canonical.encode(value).decode()
