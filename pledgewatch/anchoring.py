"""What a ledger stores for a checkpoint: a short, versioned, self-describing payload.

    payload = LEDGER_DOMAIN || canonical({"origin": <text>, "root": <64 hex>, "size": <int>,
                                          "v": 1})

with ``LEDGER_DOMAIN = b"pledgewatch/ledger-anchor/v1\\n"``. On Ethereum the payload is the
transaction's calldata (a zero-value transaction); in the embedded SQLite ledger it is the
entry's payload. Anyone who finds the payload can tell what it commits to, and a verifier
compares it byte for byte with the one it rebuilds from a checkpoint.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pledgewatch import canonical
from pledgewatch.errors import ValidationError

LEDGER_DOMAIN = b"pledgewatch/ledger-anchor/v1\n"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class AnchoredRoot:
    origin: str
    size: int
    root: bytes


def anchor_payload(origin: str, size: int, root: bytes) -> bytes:
    if len(root) != 32:
        raise ValidationError("root: want 32 bytes")
    body = {"origin": origin, "root": root.hex(), "size": size, "v": 1}
    return LEDGER_DOMAIN + canonical.encode(body)


def parse_anchor_payload(payload: bytes) -> AnchoredRoot:
    if not payload.startswith(LEDGER_DOMAIN):
        raise ValidationError("ledger payload: missing pledgewatch/ledger-anchor/v1 prefix")
    value = canonical.decode(payload[len(LEDGER_DOMAIN) :])
    if not isinstance(value, dict) or set(value) != {"origin", "root", "size", "v"}:
        raise ValidationError("ledger payload: want keys origin, root, size, v")
    if value["v"] != 1 or not isinstance(value["origin"], str):
        raise ValidationError("ledger payload: want v = 1 and a text origin")
    if not isinstance(value["root"], str) or _HEX64.fullmatch(value["root"]) is None:
        raise ValidationError("ledger payload root: want 64 lowercase hex digits")
    size = value["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValidationError("ledger payload size: want an integer >= 0")
    return AnchoredRoot(value["origin"], size, bytes.fromhex(value["root"]))


SQLITE_ENTRY_DOMAIN = b"pledgewatch/sqlite-ledger/v1\n"


@dataclass(frozen=True, slots=True)
class LedgerReceipt:
    """Where a checkpoint's payload landed on a ledger. Kept with the checkpoint, copied into
    proof files.

    - ``backend``: ``"sqlite"`` (the embedded hash-chained ledger) or ``"ethereum"``.
    - ``ledger_id``: sqlite: the genesis entry hash (64 hex); ethereum: ``"eip155:<chain id>"``.
    - ``chain_id``: the EIP-155 chain id (ethereum) or ``None``.
    - ``tx_hash``: ethereum: the transaction hash (``0x`` + 64 hex); sqlite: the entry hash.
    - ``block_number``: ethereum block number; sqlite: the entry's height (genesis = 0).
    - ``block_time_ms``: block timestamp (ethereum, whole seconds × 1000) or entry time.
    - ``prev_hash``: sqlite: the previous entry hash (64 hex); ethereum: ``None``.
    - ``payload``: the exact anchor payload (``anchor_payload``) the ledger holds.

    The sqlite entry hash is ``SHA-256(SQLITE_ENTRY_DOMAIN || prev_hash (32 bytes) ||
    height (8 bytes, big-endian) || time_ms (8 bytes, big-endian) || payload)``.
    """

    backend: str
    ledger_id: str
    chain_id: int | None
    tx_hash: str
    block_number: int
    block_time_ms: int
    prev_hash: str | None
    payload: bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "block_number": self.block_number,
            "block_time_ms": self.block_time_ms,
            "chain_id": self.chain_id,
            "ledger_id": self.ledger_id,
            "payload": self.payload.hex(),
            "prev_hash": self.prev_hash,
            "tx_hash": self.tx_hash,
        }

    @classmethod
    def from_dict(cls, value: object) -> LedgerReceipt:
        want = {
            "backend",
            "block_number",
            "block_time_ms",
            "chain_id",
            "ledger_id",
            "payload",
            "prev_hash",
            "tx_hash",
        }
        if not isinstance(value, dict) or set(value) != want:
            raise ValidationError(f"ledger receipt: want keys {sorted(want)}")
        problems = [
            name
            for name, ok in (
                ("backend", value["backend"] in ("sqlite", "ethereum")),
                ("ledger_id", isinstance(value["ledger_id"], str)),
                ("chain_id", value["chain_id"] is None or _is_int(value["chain_id"])),
                ("tx_hash", isinstance(value["tx_hash"], str)),
                ("block_number", _is_int(value["block_number"])),
                ("block_time_ms", _is_int(value["block_time_ms"])),
                ("prev_hash", value["prev_hash"] is None or isinstance(value["prev_hash"], str)),
                ("payload", isinstance(value["payload"], str)),
            )
            if not ok
        ]
        if problems:
            raise ValidationError(f"ledger receipt: bad {', '.join(problems)}")
        try:
            payload = bytes.fromhex(value["payload"])
        except ValueError:
            raise ValidationError("ledger receipt payload: want hex") from None
        return cls(
            value["backend"],
            value["ledger_id"],
            value["chain_id"],
            value["tx_hash"],
            value["block_number"],
            value["block_time_ms"],
            value["prev_hash"],
            payload,
        )


def sqlite_entry_hash(prev_hash: bytes, height: int, time_ms: int, payload: bytes) -> bytes:
    return hashlib.sha256(
        SQLITE_ENTRY_DOMAIN
        + prev_hash
        + height.to_bytes(8, "big")
        + time_ms.to_bytes(8, "big")
        + payload
    ).digest()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
