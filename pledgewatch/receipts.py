"""Receipts: the anchor's signed statement that it holds a gateway's events.

A gateway forgets an event only when a receipt for it arrives: broker PUBACK means the broker
has it, a receipt means the bank has it. Receipt body (canonical JSON)::

    {"anchor": <32 hex: anchor key id>,
     "gateway": <gateway id>,
     "items": [{"id": <64 hex event id>, "reason": <text or null>, "status": <status>}, ...],
     "ts_ms": <int: anchor clock when signed>,
     "v": 1,
     "warehouse": <warehouse id>}

``status`` is ``stored`` (newly stored), ``duplicate`` (already stored: a harmless re-delivery)
or ``quarantined`` (refused; the anchor keeps the raw bytes with ``reason``). All three mean
"the anchor holds it" and release the event from the gateway outbox. Wire bytes are the
canonical JSON of ``{"receipt": <body>, "sig": <128 hex>}`` where ``sig`` is Ed25519 over
``RECEIPT_DOMAIN || canonical(body)``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from pledgewatch import canonical
from pledgewatch.errors import ValidationError
from pledgewatch.signing import RECEIPT_DOMAIN, SigningKey, key_id, verify
from pledgewatch.topics import check_id

RECEIPT_VERSION = 1
MAX_ITEMS = 1000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIG = re.compile(r"[0-9a-f]{128}")


class ReceiptStatus(enum.Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class ReceiptItem:
    event_id: str
    status: ReceiptStatus
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.event_id, "reason": self.reason, "status": self.status.value}


@dataclass(frozen=True, slots=True)
class Receipt:
    anchor: str
    warehouse: str
    gateway: str
    ts_ms: int
    items: tuple[ReceiptItem, ...]

    def body(self) -> dict[str, Any]:
        return {
            "anchor": self.anchor,
            "gateway": self.gateway,
            "items": [item.to_dict() for item in self.items],
            "ts_ms": self.ts_ms,
            "v": RECEIPT_VERSION,
            "warehouse": self.warehouse,
        }


def sign_receipt(receipt: Receipt, key: SigningKey) -> bytes:
    """Wire bytes of ``receipt`` signed by the anchor key (whose id must match)."""
    if receipt.anchor != key.key_id:
        raise ValidationError(f"receipt anchor: got {receipt.anchor}, want {key.key_id}")
    body = canonical.encode(receipt.body())
    sig = key.sign(RECEIPT_DOMAIN, body)
    return canonical.encode({"receipt": receipt.body(), "sig": sig.hex()})


def parse_receipt(data: bytes, anchor_public_key: bytes) -> Receipt:
    """Decode wire bytes and verify the anchor signature; raise our errors on anything off."""
    value = canonical.decode(data, max_bytes=256 * 1024)
    if not isinstance(value, dict) or set(value) != {"receipt", "sig"}:
        raise ValidationError("receipt envelope: want keys receipt, sig")
    sig = value["sig"]
    if not isinstance(sig, str) or _SIG.fullmatch(sig) is None:
        raise ValidationError("receipt sig: want 128 lowercase hex digits")
    body = value["receipt"]
    verify(anchor_public_key, RECEIPT_DOMAIN, canonical.encode(body), bytes.fromhex(sig))
    receipt = _receipt_from_body(body)
    if receipt.anchor != key_id(anchor_public_key):
        raise ValidationError("receipt anchor key id does not match the anchor key")
    return receipt


def _receipt_from_body(body: object) -> Receipt:
    want = {"anchor", "gateway", "items", "ts_ms", "v", "warehouse"}
    if not isinstance(body, dict) or set(body) != want:
        raise ValidationError(f"receipt body: want keys {sorted(want)}")
    if body["v"] != RECEIPT_VERSION or isinstance(body["v"], bool):  # true == 1 in Python
        raise ValidationError(f"receipt v: got {body['v']!r}, want {RECEIPT_VERSION}")
    items = body["items"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise ValidationError(f"receipt items: want a list of 1..{MAX_ITEMS}")
    if not isinstance(body["ts_ms"], int) or isinstance(body["ts_ms"], bool):
        raise ValidationError("receipt ts_ms: want an integer")
    if not isinstance(body["anchor"], str):
        raise ValidationError("receipt anchor: want a key id")
    return Receipt(
        anchor=body["anchor"],
        warehouse=check_id("warehouse", body["warehouse"]),
        gateway=check_id("gateway", body["gateway"]),
        ts_ms=body["ts_ms"],
        items=tuple(_item(i) for i in items),
    )


def _item(value: object) -> ReceiptItem:
    if not isinstance(value, dict) or set(value) != {"id", "reason", "status"}:
        raise ValidationError("receipt item: want keys id, reason, status")
    if not isinstance(value["id"], str) or _HEX64.fullmatch(value["id"]) is None:
        raise ValidationError("receipt item id: want 64 lowercase hex digits")
    try:
        status = ReceiptStatus(value["status"])
    except ValueError:
        raise ValidationError(f"receipt item status: got {value['status']!r}") from None
    reason = value["reason"]
    if reason is not None and not isinstance(reason, str):
        raise ValidationError("receipt item reason: want text or null")
    return ReceiptItem(value["id"], status, reason)
